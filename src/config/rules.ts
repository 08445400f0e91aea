import type { Config } from './schema.js'

export type DatabaseRollback = 'restore' | 'down' | 'none'

/** Backups are configured and on, with something to back up. */
export function backupsOn(config: Config): boolean {
  return (
    !!config.backup &&
    config.backup.enabled &&
    (config.backup.databases.length > 0 || config.backup.files.length > 0)
  )
}

/**
 * `rollback.database`, or its default: down when migrate.down AND migrate.revision are set (the revision read
 * before and after migrating tells whether this run's migration changed anything, and `down` needs that),
 * else restore when backups are on, else none. A `down` without a `revision` command runs only when asked
 * for (`rollback.database: down`): `alembic downgrade -1` or `php artisan migrate:rollback` undo the LAST
 * batch, which may be the previous release's.
 */
export function databaseRollbackMode(config: Config): DatabaseRollback {
  const m = config.stages.migrate
  if (config.rollback.database) return config.rollback.database
  if (m?.down && m.revision) return 'down'
  return backupsOn(config) ? 'restore' : 'none'
}

/** Config combinations that cannot work, found before anything connects. */
export function migrationProblems(config: Config): string[] {
  const problems: string[] = []
  const mode = config.rollback.database
  if (mode === 'down' && !config.stages.migrate?.down) {
    problems.push('rollback.database: down needs stages.migrate.down (e.g. alembic downgrade {revision})')
  }
  const m = config.stages.migrate
  if (m?.down?.includes('{revision}') && !m.revision) {
    problems.push(
      'stages.migrate.down uses {revision}, but there is no stages.migrate.revision to read it (e.g. alembic current)'
    )
  }
  if (mode === 'restore' && !backupsOn(config)) {
    problems.push('rollback.database: restore needs backups (backup.databases) to restore from')
  }
  return problems
}

/** `cache:` settings that would cache state or secrets, or that have nothing to cache for. */
export function cacheProblems(config: Config): string[] {
  const cache = config.cache
  if (!cache) return []
  const problems: string[] = []
  if (!config.stages.build_local)
    problems.push('cache: caches what stages.build_local uses; there is no stages.build_local')
  const shared = [...config.shared.files, ...config.shared.dirs].map(p => p.replace(/\/+$/, ''))
  const inside = (a: string, b: string) => a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`)
  for (const [i, raw] of cache.paths.entries()) {
    const path = raw.replace(/\/+$/, '')
    const segments = path.split('/')
    if (segments.some(s => s.startsWith('.env')))
      problems.push(`cache.paths[${i}]: ${raw} is an .env file or under one: secrets are never cached`)
    else if (segments.includes('.safe-deploy') || segments.includes('.git'))
      problems.push(`cache.paths[${i}]: ${raw} holds state (.git, .safe-deploy): never cached`)
    const owner = shared.find(s => inside(path, s))
    if (owner)
      problems.push(
        `cache.paths[${i}]: ${raw} overlaps the shared path ${owner}: shared files and dirs hold state and secrets, never cached`
      )
  }
  return problems
}
