import { ConfigError } from '../config/errors.js'
import { parseBackupTime } from './retention.js'

declare const brand: unique symbol
/** `shop_20261121_193000`: the app name and the UTC time; every file of one backup starts with it. */
export type BackupName = string & { readonly [brand]: 'BackupName' }

const NAME = /^([A-Za-z0-9][A-Za-z0-9._-]{0,63})_(\d{8})_(\d{6})$/

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
  return NAME.test(value) && parseBackupTime(value) !== undefined
}

export function appOf(name: BackupName): string {
  return (NAME.exec(name) as RegExpExecArray)[1] as string
}

export function backupTime(name: BackupName): Date {
  return parseBackupTime(name) as Date
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

export type ArtifactKind = 'postgres' | 'mysql' | 'sqlite' | 'files'
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
const BASE_EXT: Record<ArtifactKind, string> = {
  postgres: '.dump',
  mysql: '.sql',
  sqlite: '.sqlite3',
  files: '.files.tar'
}

/**
 * `NAME.dump` (PostgreSQL custom format, compressed by pg_dump itself), `NAME.sql.gz|.sql.zst|.sql`
 * (MySQL), `NAME.sqlite3.gz` (SQLite), `NAME.files.tar.gz` (files); with several databases
 * `NAME.<label>.<ext>`; `.age` when encrypted.
 */
export function artifactFile(name: BackupName, a: Omit<Artifact, 'file'>): string {
  const compress = a.kind === 'postgres' ? '' : COMPRESS_EXT[a.compress]
  const label = a.kind !== 'files' && a.label ? `.${a.label}` : ''
  return `${name}${label}${BASE_EXT[a.kind]}${compress}${a.encrypted ? '.age' : ''}`
}

export const manifestFile = (name: BackupName) => `${name}.sha256`
export const metaFile = (name: BackupName) => `${name}.meta.json`
/** The manifest signature (`backup.sign_key`), see sign.ts. */
export const signatureFile = (name: BackupName) => `${name}.sig`
/** The marker of a backup kept out of retention (`backup --keep`, `backups protect NAME`). */
export const keepFile = (name: BackupName) => `${name}.keep`

const ARTIFACT =
  /^(?:\.([A-Za-z0-9_-]{1,32}))??\.(dump|sql|sql\.gz|sql\.zst|sqlite3|sqlite3\.gz|sqlite3\.zst|files\.tar|files\.tar\.gz|files\.tar\.zst)(\.age)?$/

/** What a file of backup `name` holds, from its name alone; undefined for the manifest, meta and others. */
export function parseArtifactFile(name: BackupName, file: string): Artifact | undefined {
  if (!file.startsWith(name)) return undefined
  const m = ARTIFACT.exec(file.slice(name.length))
  if (!m) return undefined
  const [, label, ext = '', age] = m
  const [base, comp] = ext.startsWith('files.tar')
    ? ['files', ext.slice('files.tar'.length)]
    : [ext.split('.')[0] as string, ext.slice((ext.split('.')[0] as string).length)]
  const kind = ({ dump: 'postgres', sql: 'mysql', sqlite3: 'sqlite', files: 'files' } as const)[
    base as 'dump' | 'sql' | 'sqlite3' | 'files'
  ]
  if (kind === 'files' && label) return undefined
  const compress: Compression = comp === '.gz' ? 'gzip' : comp === '.zst' ? 'zstd' : 'none'
  return { kind, label, compress: kind === 'postgres' ? 'none' : compress, encrypted: !!age, file }
}
