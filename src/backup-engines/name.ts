import { ConfigError } from '../core/exit.js'
import { FORMATS, type ArtifactKind } from './index.js'

export type { ArtifactKind }

declare const brand: unique symbol
/** `shop_20261121_193000`: the app name and the UTC time; every file of one backup starts with it. */
export type BackupName = string & { readonly [brand]: 'BackupName' }

/**
 * The one backup-name pattern: `<app>_YYYYMMDD_HHMMSS`, optionally followed by extensions (`.dump`,
 * `.sql.gz`, `.files.tar.gz.age`, `.sha256`, ...). The app name may contain `_`; the greedy app group
 * makes the timestamp the last one.
 */
const BACKUP_FILE =
  /^([A-Za-z0-9][A-Za-z0-9._-]{0,63})_(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})((?:\.[A-Za-z0-9_-]+)*)$/

export interface ParsedBackupFile {
  app: string
  /** `<app>_YYYYMMDD_HHMMSS`: every file of one backup starts with it. */
  stem: BackupName
  time: Date
  /** What follows the stem: `.sql.gz`, or empty for the name itself. */
  rest: string
}

/** Parses a backup name or a file of one; undefined when it is neither (or the date is impossible). */
export function parseBackupFileName(file: string): ParsedBackupFile | undefined {
  const m = BACKUP_FILE.exec(file)
  if (!m) return undefined
  const [, app, ys, mos, ds, hs, mis, ss, rest = ''] = m
  if (app === undefined) return undefined
  const [y, mo, d, h, mi, s] = [ys, mos, ds, hs, mis, ss].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number
  ]
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59) return undefined
  const time = new Date(Date.UTC(y, mo - 1, d, h, mi, s))
  // Date.UTC rolls 2025-02-30 over to March (and maps years 0-99 to 1900-1999): refuse both.
  if (time.getUTCFullYear() !== y || time.getUTCMonth() !== mo - 1 || time.getUTCDate() !== d)
    return undefined
  return { app, stem: `${app}_${ys}${mos}${ds}_${hs}${mis}${ss}` as BackupName, time, rest }
}

const pad = (n: number) => String(n).padStart(2, '0')

export function newBackupName(app: string, now: Date): BackupName {
  const d = `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}`
  const t = `${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}${pad(now.getUTCSeconds())}`
  const name = `${app}_${d}_${t}`
  if (!isBackupName(name)) throw new Error(`cannot make a backup name from app ${JSON.stringify(app)}`)
  return name
}

/** A well-formed name with a real date (2025-02-30 is not one). */
export function isBackupName(value: string): value is BackupName {
  return parseBackupFileName(value)?.rest === ''
}

export function appOf(name: BackupName): string {
  return (parseBackupFileName(name) as ParsedBackupFile).app
}

export function backupTime(name: BackupName): Date {
  return (parseBackupFileName(name) as ParsedBackupFile).time
}

/**
 * Parses a backup name given by a person (`restore NAME`, `backups verify NAME`): bad input fails before
 * anything connects. A name of another app is refused too: restoring it would put foreign data in place.
 */
export function parseBackupName(value: string, app?: string, what = 'backup name'): BackupName {
  if (!isBackupName(value)) {
    throw new ConfigError(
      `${what} ${JSON.stringify(value)} is not a backup name; expected <app>_YYYYMMDD_HHMMSS (UTC), e.g. ${app ?? 'shop'}_20261121_193000 (see \`safe-deploy backups list\`)`
    )
  }
  if (app !== undefined && appOf(value) !== app) {
    throw new ConfigError(
      `${what} ${value} belongs to app ${appOf(value)}, but this config is for ${app}; use that app's config`
    )
  }
  return value
}

export type Compression = 'gzip' | 'zstd' | 'none'

/** One file of a backup: a database dump or the files archive. */
export interface Artifact {
  kind: ArtifactKind
  /** Which database, when a backup holds several (`NAME.<label>.dump`). */
  label?: string
  compress: Compression
  encrypted: boolean
  file: string
}

const COMPRESS_EXT: Record<Compression, string> = { gzip: '.gz', zstd: '.zst', none: '' }
const KINDS = Object.keys(FORMATS) as ArtifactKind[]

/**
 * `NAME.dump` (PostgreSQL custom format, compressed by pg_dump itself), `NAME.sql.gz|.sql.zst|.sql`
 * (MySQL), `NAME.sqlite3.gz` (SQLite), `NAME.files.tar.gz` (files); with several databases
 * `NAME.<label>.<ext>`; `.age` when encrypted.
 */
export function artifactFile(name: BackupName, a: Omit<Artifact, 'file'>): string {
  const format = FORMATS[a.kind]
  const compress = format.compressible ? COMPRESS_EXT[a.compress] : ''
  const label = a.kind !== 'files' && a.label ? `.${a.label}` : ''
  return `${name}${label}.${format.ext}${compress}${a.encrypted ? '.age' : ''}`
}

export const manifestFile = (name: BackupName) => `${name}.sha256`
export const metaFile = (name: BackupName) => `${name}.meta.json`
/** The manifest signature (`backup.sign_key`), see sign.ts. */
export const signatureFile = (name: BackupName) => `${name}.sig`
/** The marker of a backup kept out of retention (`backup --keep`, `backups protect NAME`). */
export const keepFile = (name: BackupName) => `${name}.keep`

const escape = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** `.<label>?.<ext>[.gz|.zst][.age]` for every format in the registry. */
const ARTIFACT = new RegExp(
  `^(?:\\.([A-Za-z0-9_-]{1,32}))??\\.(${KINDS.map(k => escape(FORMATS[k].ext)).join('|')})((?:\\.gz|\\.zst)?)(\\.age)?$`
)

/** What a file of backup `name` holds, from its name alone; undefined for the manifest, meta and others. */
export function parseArtifactFile(name: BackupName, file: string): Artifact | undefined {
  if (!file.startsWith(name)) return undefined
  const m = ARTIFACT.exec(file.slice(name.length))
  if (!m) return undefined
  const [, label, ext = '', comp = '', age] = m
  const kind = KINDS.find(k => FORMATS[k].ext === ext) as ArtifactKind
  if (kind === 'files' && label) return undefined
  if (comp && !FORMATS[kind].compressible) return undefined
  const compress: Compression = comp === '.gz' ? 'gzip' : comp === '.zst' ? 'zstd' : 'none'
  return { kind, label, compress, encrypted: !!age, file }
}
