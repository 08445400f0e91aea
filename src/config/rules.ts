import { sh } from '../commands/quote.js'
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

/** What `verify.logs.preset` adds to fail_on. */
export const LOG_PRESETS: Record<'telegram-polling', string[]> = {
  // python-telegram-bot: "telegram.error.Conflict: Conflict: terminated by other getUpdates request";
  // aiogram: "TelegramConflictError: Telegram server says - Conflict: terminated by other getUpdates request"
  'telegram-polling': ['Conflict: terminated by other getUpdates', '409 Conflict', 'Error code: 409']
}

/**
 * A logs command with its placeholders filled, each value quoted: {since} (ISO 8601 UTC, what journalctl and
 * docker logs take), {since_epoch} (seconds), {lines}, and verify's {started} (epoch seconds of the run start).
 */
export function fillLogsCommand(template: string, since: Date, lines: number): string {
  const epoch = String(Math.floor(since.getTime() / 1000))
  const values: Record<string, string> = {
    since: since.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    since_epoch: epoch,
    started: epoch,
    lines: String(lines)
  }
  return template.replace(/\{(since_epoch|since|started|lines)\}/g, (_, k: string) => sh(values[k] as string))
}

/**
 * The log scan of verify: its command (verify.logs.command, else logs.command, both with the run start as
 * {since}/{started}) and its patterns (fail_on plus the preset's); undefined when verify.logs is not set.
 */
export function logScan(config: Config): { template: string; failOn: string[] } | undefined {
  const v = config.verify.logs
  const template = v?.command ?? config.logs?.command
  if (!v || !template) return undefined
  return { template, failOn: [...new Set([...v.fail_on, ...(v.preset ? LOG_PRESETS[v.preset] : [])])] }
}

/** verify and restart settings that cannot work together. */
export function verifyProblems(config: Config): string[] {
  const problems: string[] = []
  if (config.verify.logs && !config.verify.logs.command && !config.logs)
    problems.push(
      'verify.logs: give verify.logs.command, or logs.command (verify.logs uses it with {since} the run start)'
    )
  if (config.stages.stop && config.switch.strategy === 'blue-green')
    problems.push(
      'stages.stop: blue-green runs both releases at once and stops the old one with switch.stop; stages.stop is for symlink and graceful'
    )
  return problems
}
