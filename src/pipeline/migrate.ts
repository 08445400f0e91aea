import { databaseRollbackMode } from '../config/rules.js'
import { sh } from '../commands/quote.js'
import { inRelease } from '../commands/release.js'
import { restoreBackup } from '../backup/ops.js'
import type { BackupName } from '../backup/name.js'
import { lastLines, primaryOf, runOn } from './context.js'
import type { HistoryEntry } from '../release/history.js'
import { ExitCode } from '../config/errors.js'
import { StageError, errorMessage } from './errors.js'
import { hookEnv } from './env.js'
import type { Stage } from './stage.js'

/** What the migrate stage did, for its undo, the history line and the report. */
export interface MigrationState {
  /** The revision before migrating (first word of the last line `revision` printed). */
  revision?: string
  started: boolean
  migrated: boolean
  /** What a rollback did to the database. */
  database?: 'restored' | 'down' | 'left' | 'failed'
}

/** The revision is the first word of the last non-empty line: `ae1027a6acf (head)` -> `ae1027a6acf`. */
export function parseRevision(stdout: string): string {
  const last = stdout
    .split('\n')
    .map(l => l.trim())
    .filter(Boolean)
    .at(-1)
  return last?.split(/\s+/)[0] ?? ''
}

/** `{revision}` in a user command becomes the recorded revision, quoted. */
export function downCommand(template: string, revision: string): string {
  return template.replace(/\{revision\}/g, () => sh(revision))
}

/**
 * Runs the migration on the primary, inside the new release. Its undo puts the database back (down command
 * or the pre-deploy backup); it runs before the code is switched back, so the previous release restarts
 * against the database it was verified with. If that fails, a person must look (exit 5).
 */
export function migrateStage(
  rel: () => string,
  backupName: () => string | undefined,
  state: MigrationState
): Stage {
  return {
    name: 'migrate',
    undoFirst: true,
    undoMustSucceed: () => state.started,
    save: () => ({ ...state }),
    async run(ctx) {
      const m = ctx.config.stages.migrate
      if (!m) {
        ctx.log.info('no stages.migrate configured; skipped')
        return
      }
      const release = rel()
      const p = primaryOf(ctx)
      const env = hookEnv(ctx, p, release, 'migrate')
      if (m.revision) {
        const r = await runOn(ctx, p, inRelease(p.layout, release, 'migration revision', m.revision, env), {
          stage: 'migrate'
        })
        state.revision = parseRevision(r.stdout)
        ctx.log.info(`database revision before migrating: ${state.revision || '(none)'}`, p.host.name)
      }
      state.started = true
      ctx.progress?.checkpoint()
      await runOn(ctx, p, inRelease(p.layout, release, 'migrate', m.command, env), { stage: 'migrate' })
      state.migrated = true
      ctx.log.info('migration done', p.host.name)
    },
    async undo(ctx) {
      if (!state.started) return
      const mode = databaseRollbackMode(ctx.config)
      const p = primaryOf(ctx)
      const release = rel()
      const m = ctx.config.stages.migrate
      const backup = backupName()
      const restore = async (why: string) => {
        if (!backup) {
          state.database = 'failed'
          throw new StageError(
            'rollback',
            `${why}, and there is no pre-deploy backup to restore: the database is as the migration left it`,
            p.host.name
          )
        }
        ctx.log.info(`${why}: restoring the pre-deploy backup ${backup}`, p.host.name)
        await restoreBackup(ctx, p, backup as BackupName, {
          stage: 'rollback',
          only: 'databases',
          safetyBackup: false
        })
        state.database = 'restored'
        ctx.log.info(`database restored from ${backup}`, p.host.name)
      }
      if (mode === 'none') {
        state.database = 'left'
        ctx.log.warn('rollback.database is none: the database is left as the migration made it', p.host.name)
        return
      }
      if (mode === 'down' && m?.down) {
        if (state.revision === undefined)
          return restore('no revision was recorded before migrating (stages.migrate.revision)')
        const command = downCommand(m.down, state.revision)
        const env = { ...hookEnv(ctx, p, release, 'rollback'), SAFE_DEPLOY_DB_REVISION: state.revision }
        const r = await runOn(ctx, p, inRelease(p.layout, release, 'migrate down', command, env), {
          stage: 'rollback',
          allowFail: true
        })
        if (r.code === 0) {
          state.database = 'down'
          ctx.log.info(`database migrated down to ${state.revision || '(none)'}`, p.host.name)
          return
        }
        return restore(`\`${command}\` failed (exit ${r.code}: ${lastLines(r.stderr, 2)})`)
      }
      try {
        await restore('the migration ran')
      } catch (e) {
        state.database = 'failed'
        throw new StageError('rollback', `restoring the database failed: ${errorMessage(e)}`, p.host.name)
      }
    }
  }
}

/** What a manual rollback does to the database (see rollbackDatabaseStage). */
export interface RollbackDatabaseOptions {
  /** `--restore NAME`: restore this backup (databases only, after a safety backup). */
  restore?: BackupName
  /** `--no-db`: leave the database as it is. */
  noDb?: boolean
}

/** The deploys being undone by going back to `target` from `from`, oldest first. */
export function deploysBetween(
  history: HistoryEntry[],
  target: string,
  from: string | undefined
): HistoryEntry[] {
  return history.filter(
    h => h.type === 'deploy' && h.status === 'success' && h.release > target && (!from || h.release <= from)
  )
}

/**
 * The database step of a manual rollback, before the code switches: run the down command to the revision
 * the target was verified with, restore a named backup, or nothing. Restoring a backup loses the writes made
 * since it was taken, so it never happens unless asked for by name.
 */
export function rollbackDatabaseStage(
  target: () => string,
  from: () => string | undefined,
  history: () => HistoryEntry[],
  opts: RollbackDatabaseOptions,
  state: MigrationState
): Stage {
  return {
    name: 'database',
    undoMustSucceed: () => state.started,
    async run(ctx) {
      const p = primaryOf(ctx)
      if (opts.noDb) {
        ctx.log.info('--no-db: the database is left as it is')
        return
      }
      if (opts.restore) {
        state.started = true
        const r = await restoreBackup(ctx, p, opts.restore, { stage: 'database', only: 'databases' })
        state.database = 'restored'
        ctx.log.info(
          `database restored from ${opts.restore}${r.safety ? ` (safety backup of what was there: ${r.safety.name})` : ''}`,
          p.host.name
        )
        return
      }
      const migrated = deploysBetween(history(), target(), from()).filter(h => h.migrated)
      if (!migrated.length) {
        ctx.log.info(`no migration ran since ${target()}: the database needs no change`)
        return
      }
      const first = migrated[0] as HistoryEntry
      const mode = databaseRollbackMode(ctx.config)
      const down = ctx.config.stages.migrate?.down
      const leaving = from()
      if (mode === 'down' && down && typeof first.revision === 'string' && leaving) {
        state.started = true
        const command = downCommand(down, first.revision)
        const env = { ...hookEnv(ctx, p, leaving, 'database'), SAFE_DEPLOY_DB_REVISION: first.revision }
        // the release being left knows every migration since the target: it runs the down command
        await runOn(ctx, p, inRelease(p.layout, leaving, 'migrate down', command, env), { stage: 'database' })
        state.database = 'down'
        ctx.log.info(`database migrated down to ${first.revision || '(none)'} for ${target()}`, p.host.name)
        return
      }
      if (mode === 'none') {
        ctx.log.warn(
          `${migrated.map(h => h.release).join(', ')} migrated the database; rollback.database is none: left as it is`
        )
        return
      }
      const backup = first.backup
      throw new StageError(
        'database',
        `${migrated.map(h => h.release).join(', ')} migrated the database after ${target()}. ${
          backup
            ? `Going back needs the database as it was before: the backup ${backup} taken then. Restoring it loses every write made since; to do that pass --restore ${backup}`
            : 'No backup from before that migration is recorded; restore one by name with --restore NAME'
        }, or pass --no-db to keep the database as it is.`,
        p.host.name,
        ExitCode.badInput
      )
    }
  }
}
