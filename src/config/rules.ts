import type { Config, RoleOverride } from './schema.js'

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

/** The keys a role may override (roles.<name>), each replacing the top-level one for the role's hosts. */
const ROLE_KEYS = {
  'stages.restart': (r: RoleOverride) => r.stages?.restart !== undefined,
  switch: (r: RoleOverride) => r.switch !== undefined,
  verify: (r: RoleOverride) => r.verify !== undefined
} as const

/** Two roles of one host that override the same key: which one wins cannot be told, so the config is refused. */
export function roleProblems(config: Config, hosts: { name: string; roles: string[] }[]): string[] {
  const problems: string[] = []
  for (const h of hosts) {
    for (const [key, has] of Object.entries(ROLE_KEYS)) {
      const by = h.roles.filter(r => config.roles[r] && has(config.roles[r]))
      if (by.length > 1)
        problems.push(
          `hosts: ${h.name} has roles ${by.join(' and ')}, which both set ${key} (roles.${by[0]}, roles.${by[1]}); a host takes each key from one role only`
        )
    }
  }
  return problems
}

/**
 * The config as one host sees it: each of stages.restart, switch and verify from the host's role that sets it
 * (roleProblems refused two), else the top-level one.
 */
export function configForRoles(config: Config, roles: readonly string[]): Config {
  const over = roles.flatMap(r => (config.roles[r] ? [config.roles[r]] : []))
  if (!over.length) return config
  const restart = over.find(ROLE_KEYS['stages.restart'])?.stages?.restart
  return {
    ...config,
    stages: restart === undefined ? config.stages : { ...config.stages, restart },
    switch: over.find(ROLE_KEYS.switch)?.switch ?? config.switch,
    verify: over.find(ROLE_KEYS.verify)?.verify ?? config.verify
  }
}
