import type { Layout } from '../commands/layout.js'
import type { BackupConfig, DatabaseConfig } from './config.js'
import { databaseSecrets, parseDatabaseUrl, resolveConnection } from './connection.js'
import { assertPolicyKeepsSomething } from './retention.js'
import type { Compression } from './name.js'
import type { Target } from './target.js'
import { engineOf } from './index.js'
import { isRelativeSafe } from './engine.js'

/** Everything a backup on one host needs, resolved from the config: pure data. */
export interface BackupPlan {
  app: string
  /** The deploy root on the host. */
  root: string
  /** Absolute directory of the backups on the host. */
  dir: string
  targets: Target[]
  /** Paths relative to the root, archived as `NAME.files.tar.gz`. */
  files: string[]
  filesCompress: Compression
  /** age public keys; empty: not encrypted. */
  recipients: string[]
  /** Whether an age identity is configured (its value only ever travels in `secretEnv`). */
  hasIdentity: boolean
  /** `backup.sign_key`: stays on the runner (signatures are computed here, see sign.ts). */
  signKey?: string
  config: BackupConfig
  /** Values for the script's environment (over stdin): passwords and the identity. */
  secretEnv: Record<string, string>
  /** The config's `env`, exported for every backup command too (a PATH that picks a pg_dump version). */
  env: Record<string, string>
}

export const PASSWORD_ENV = (i: number) => `SD_DB${i}_PASSWORD`
export const IDENTITY_ENV = 'SD_AGE_IDENTITY'

/** `backup:` in safe-deploy.yml as the config schema (src/config/schema.ts) reads it: absent, `false` or a section. */
export type BackupSection = false | BackupConfig | undefined

/** The `backup:` section when backups are on; undefined for no key, `false` or `enabled: false`. */
export function backupConfigOf(config: { backup?: BackupSection }): BackupConfig | undefined {
  const b = config.backup
  return b && b.enabled ? b : undefined
}

export { isRelativeSafe }

function resolvePath(root: string, p: string): string {
  return p.startsWith('/') ? p : `${root.replace(/\/+$/, '')}/${p}`
}

function defaultLabel(db: DatabaseConfig, i: number): string {
  if (db.name) return db.name
  return engineOf(db.engine).defaultLabel(db, () => resolveConnectionSafe(db)) ?? `db${i}`
}

function resolveConnectionSafe(db: DatabaseConfig) {
  try {
    return resolveConnection(db)
  } catch {
    return undefined
  }
}

/**
 * Checks what the schema cannot: URLs parse, each database names what the engine needs, labels are
 * distinct, paths stay inside the root, the retention keeps something. Returns the problems (with key
 * paths, for the config error) and the secrets to redact everywhere.
 */
export function checkBackupConfig(backup: BackupSection): { problems: string[]; secrets: string[] } {
  const problems: string[] = []
  const secrets: string[] = []
  if (!backup) return { problems, secrets }
  const labels = new Map<string, number>()
  backup.databases.forEach((db, i) => {
    const at = `backup.databases[${i}]`
    secrets.push(...databaseSecrets(db))
    const engine = engineOf(db.engine)
    let urlFailed = false
    if (db.url && engine.url) {
      try {
        parseDatabaseUrl(db.url, db.engine)
      } catch (e) {
        problems.push(`${at}.url: ${(e as Error).message}`)
        urlFailed = true
      }
    }
    problems.push(...engine.validate(db, { at, urlFailed, connection: () => resolveConnectionSafe(db) }))
    if (db.compose_dir !== undefined && !db.container) problems.push(`${at}.compose_dir: only with container`)
    if (db.container !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(db.container))
      problems.push(`${at}.container: expected a compose service name`)
    const label = defaultLabel(db, i)
    if (label === 'files') problems.push(`${at}.name: "files" is taken by the files archive; choose another`)
    const seen = labels.get(label)
    if (seen !== undefined && backup.databases.length > 1)
      problems.push(
        `${at}: databases[${seen}] and databases[${i}] are both called ${JSON.stringify(label)}; give one a distinct name`
      )
    labels.set(label, i)
  })
  backup.files.forEach((f, i) => {
    if (!isRelativeSafe(f))
      problems.push(`backup.files[${i}]: expected a path relative to the deploy root, without ..`)
  })
  if (backup.dir.split('/').includes('..') || /[\0\n\r]/.test(backup.dir))
    problems.push('backup.dir: expected a path without .. (absolute, or relative to the deploy root)')
  if (backup.enabled && !backup.databases.length && !backup.files.length)
    problems.push('backup: nothing to back up; list databases or files (or set backup: false)')
  try {
    assertPolicyKeepsSomething(backup.retention)
  } catch (e) {
    problems.push(`backup.retention: ${(e as Error).message}`)
  }
  if (backup.encrypt?.identity) secrets.push(backup.encrypt.identity)
  if (backup.sign_key !== undefined) {
    secrets.push(backup.sign_key)
    if (backup.sign_key.length < 16)
      problems.push(
        'backup.sign_key: too short to be a key (at least 16 characters; make one with `openssl rand -hex 32` and give it as env:NAME)'
      )
  }
  return { problems, secrets }
}

/** Resolves the backup config for one host's layout. The config has been checked by checkBackupConfig. */
export function resolvePlan(
  app: string,
  backup: BackupConfig,
  layout: Layout,
  env: Record<string, string> = {}
): BackupPlan {
  const root = layout.root.replace(/\/+$/, '')
  const several = backup.databases.length > 1
  const secretEnv: Record<string, string> = {}
  const targets = backup.databases.map((db, index): Target => {
    const engine = engineOf(db.engine)
    const conn = engine.url ? resolveConnection(db) : { params: {} }
    const label = defaultLabel(db, index)
    let passwordVar: string | undefined
    if (conn.password !== undefined && conn.password !== '') {
      passwordVar = `sd_pw${index}`
      secretEnv[PASSWORD_ENV(index)] = conn.password
    }
    delete conn.password
    return {
      index,
      engine: db.engine,
      label,
      fileLabel: several ? label : undefined,
      conn,
      passwordVar,
      path: db.path === undefined ? undefined : db.container ? db.path : resolvePath(root, db.path),
      container: db.container
        ? { service: db.container, dir: resolvePath(root, db.compose_dir ?? 'current') }
        : undefined,
      compress: engine.compressible ? (db.compress ?? 'gzip') : 'none'
    }
  })
  if (backup.encrypt?.identity) secretEnv[IDENTITY_ENV] = backup.encrypt.identity
  return {
    app,
    root,
    dir: resolvePath(root, backup.dir).replace(/\/+$/, ''),
    targets,
    files: backup.files,
    filesCompress: 'gzip',
    recipients: backup.encrypt?.recipients ?? [],
    hasIdentity: !!backup.encrypt?.identity,
    signKey: backup.sign_key,
    config: backup,
    secretEnv,
    env
  }
}
