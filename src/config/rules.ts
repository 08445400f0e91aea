import type { Config } from './schema.js'

export type DatabaseRollback = 'restore' | 'down' | 'none'

function backupsOn(config: Config): boolean {
  return (
    !!config.backup &&
    config.backup.enabled &&
    (config.backup.databases.length > 0 || config.backup.files.length > 0)
  )
}

/** `rollback.database`, or its default: down when migrate.down is set, else restore when backups are on. */
export function databaseRollbackMode(config: Config): DatabaseRollback {
  const m = config.stages.migrate
  if (config.rollback.database) return config.rollback.database
  if (m?.down) return 'down'
  return backupsOn(config) ? 'restore' : 'none'
}

/** Config combinations that cannot work, found before anything connects. */
export function migrationProblems(config: Config): string[] {
  const problems: string[] = []
  const mode = config.rollback.database
  if (mode === 'down' && !config.stages.migrate?.down) {
    problems.push('rollback.database: down needs stages.migrate.down (e.g. alembic downgrade {revision})')
  }
  if (mode === 'restore' && !backupsOn(config)) {
    problems.push('rollback.database: restore needs backups (backup.databases) to restore from')
  }
  return problems
}
