import { backupsOn, databaseRollbackMode } from '../config/rules.js'
import type { Config } from '../config/schema.js'
import { sh } from '../commands/quote.js'
import { inRelease } from '../commands/release.js'
import {
  checkBackup,
  restoreArtifacts,
  restoreBackup,
  RestoreError,
  restoreSafety
} from '../backup/ops/restore.js'
import { planFor, type BackupResult } from '../backup/ops/shared.js'
import { takeSafetyBackup } from '../backup/ops/take.js'
import type { BackupName } from '../backup-engines/name.js'
import { lastLines, primaryOf, runOn, type HostSession, type RunContext } from '../host/context.js'
import type { HistoryEntry } from '../release/history.js'
import { ExitCode } from '../core/exit.js'
import { StageError, errorMessage } from '../core/errors.js'
import { hookEnv } from '../host/env.js'
import type { ProductStage, RunStage } from './stage.js'

/** What the migrate stage did, for its undo, the history line and the report. */
export interface MigrationState {
  /** The revision before migrating (first word of the last line `revision` printed). */
  revision?: string
  /** The revision read back after the migrate command (in the undo, when that command failed). */
  after?: string
  started: boolean
  /** The migration changed the database: the revision moved, or there is no `revision` command to tell. */
  migrated: boolean
  /** The migrate command succeeded and the revision did not move: nothing ran, so there is nothing to undo. */
  noop?: boolean
  /** What a rollback did to the database (`put-back`: a failed manual rollback put it back as it was). */
  database?: 'restored' | 'down' | 'left' | 'failed' | 'put-back'
  /** A manual rollback: the safety backup taken before it changed the database. */
  safety?: BackupResult
  /** A manual rollback: how its undo puts the database back (restore `safety`, or migrate `from` up again). */
  undoWith?: 'safety' | 'up'
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

const shown = (revision: string | undefined) => revision || '(none)'

/**
 * Runs the `revision` command inside `release`. With `must`, a failure fails the stage; otherwise it is a
 * warning and the revision is unknown (undefined).
 */
async function readRevision(
  ctx: RunContext,
  p: HostSession,
  release: string,
  stage: string,
  command: string,
  must = false
): Promise<string | undefined> {
  const cmd = inRelease(p.layout, release, 'migration revision', command, hookEnv(ctx, p, release, stage))
  const r = await runOn(ctx, p, cmd, { stage, allowFail: !must })
  if (r.code === 0) return parseRevision(r.stdout)
  ctx.log.warn(`\`${command}\` failed (exit ${r.code}): the revision is unknown`, p.host.name)
  return undefined
}

/**
 * Runs the down command inside `release` with `{revision}` = `revision`, then reads the revision back (when
 * there is a `revision` command) and logs what it read. Returns why it failed, or undefined when it worked:
 * a down that exits 0 but leaves another revision has failed too.
 */
async function runDown(
  ctx: RunContext,
  p: HostSession,
  release: string,
  template: string,
  revision: string | undefined,
  stage: string
): Promise<string | undefined> {
  const command = revision === undefined ? template : downCommand(template, revision)
  const env = {
    ...hookEnv(ctx, p, release, stage),
    ...(revision === undefined ? {} : { SAFE_DEPLOY_DB_REVISION: revision })
  }
  const r = await runOn(ctx, p, inRelease(p.layout, release, 'migrate down', command, env), {
    stage,
    allowFail: true
  })
  if (r.code !== 0) return `\`${command}\` failed (exit ${r.code}: ${lastLines(r.stderr, 2)})`
  const read = ctx.config.stages.migrate?.revision
  if (!read) {
    ctx.log.info(
      `\`${command}\` done; there is no stages.migrate.revision to read back the revision it left`,
      p.host.name
    )
    return undefined
  }
  const now = await readRevision(ctx, p, release, stage, read)
  if (now === undefined) return `\`${command}\` exited 0, but the revision could not be read back`
  if (revision !== undefined && now !== revision)
    return `\`${command}\` exited 0 but left the database at revision ${shown(now)}, not ${shown(revision)}`
  ctx.log.info(`database migrated down: revision read back ${shown(now)}`, p.host.name)
  return undefined
}

/**
 * Runs the migration on the primary, inside the new release, reading the revision before and after. Its
 * undo puts the database back (down command or the pre-deploy backup) only when this run's migration
 * changed it. As a `data` stage it is undone before the code is switched back (src/pipeline/policy.ts), so
 * the previous release restarts against the database it was verified with; if the undo fails, exit 5.
 */
export function migrateStage(
  rel: () => string,
  backupName: () => string | undefined,
  state: MigrationState
): ProductStage<RunStage> {
  return {
    name: 'migrate',
    scope: 'primary',
    effect: 'data',
    save: () => ({ ...state }),
    needsUndo: () => state.started && !state.noop,
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
        state.revision = await readRevision(ctx, p, release, 'migrate', m.revision, true)
        ctx.log.info(`database revision before migrating: ${shown(state.revision)}`, p.host.name)
      }
      state.started = true
      ctx.progress?.checkpoint()
      await runOn(ctx, p, inRelease(p.layout, release, 'migrate', m.command, env), { stage: 'migrate' })
      if (!m.revision) {
        state.migrated = true
        ctx.log.info('migration done', p.host.name)
        return
      }
      state.after = await readRevision(ctx, p, release, 'migrate', m.revision)
      if (state.after === undefined) {
        state.migrated = true
        ctx.log.warn('migration done; the revision after it is unknown, so a rollback treats it as migrated')
      } else if (state.after === state.revision) {
        state.noop = true
        ctx.log.info(`no migration ran; database left as it is (revision ${shown(state.after)})`, p.host.name)
      } else {
        state.migrated = true
        ctx.log.info(`migration done; database revision after migrating: ${shown(state.after)}`, p.host.name)
      }
    },
    async undo(ctx) {
      if (!state.started || state.noop) return
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
        await restoreBackup(ctx, p, backup as BackupName, { stage: 'rollback', only: 'databases' })
        state.database = 'restored'
        ctx.log.info(`database restored from ${backup}`, p.host.name)
      }
      if (mode === 'none') {
        state.database = 'left'
        ctx.log.warn('rollback.database is none: the database is left as the migration made it', p.host.name)
        return
      }
      // the migrate command failed: did it move the revision before it did?
      if (m?.revision && state.revision !== undefined && state.after === undefined && !state.migrated)
        state.after = await readRevision(ctx, p, release, 'rollback', m.revision)
      if (state.revision !== undefined && state.after === state.revision) {
        const why = `the migration failed without changing the revision (${shown(state.revision)}); it may have applied part of its changes`
        if (mode === 'down' && !backup) {
          state.database = 'left'
          ctx.log.warn(
            `${why}. \`down\` is not run (it would undo an earlier migration) and there is no pre-deploy backup: the database is left as it is; if the migration is not transactional, check it`,
            p.host.name
          )
          return
        }
        return restore(why)
      }
      if (mode === 'down' && m?.down) {
        if (state.revision === undefined && m.down.includes('{revision}'))
          return restore('no revision was recorded before migrating (stages.migrate.revision)')
        const why = await runDown(ctx, p, release, m.down, state.revision, 'rollback')
        if (!why) {
          state.database = 'down'
          return
        }
        return restore(why)
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
  /** `--yes`: run the down command even when there are no backups to take a safety backup with. */
  yes?: boolean
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

/** What a manual rollback would do to the database: computed from history alone, for the run and --dry-run. */
export type RollbackDatabasePlan =
  | { kind: 'nothing'; message: string; warn?: boolean }
  | { kind: 'restore'; backup: BackupName }
  | {
      kind: 'down'
      /** The down command with `{revision}` filled in, exactly as it runs. */
      command: string
      revision: string
      /** The release it runs in: the one being left, which knows every migration since the target. */
      release: string
      /** The deploys whose migrations it undoes. */
      migrated: string[]
    }
  | { kind: 'refused'; message: string }

export function planRollbackDatabase(
  config: Config,
  history: HistoryEntry[],
  target: string,
  from: string | undefined,
  opts: RollbackDatabaseOptions
): RollbackDatabasePlan {
  if (opts.noDb) return { kind: 'nothing', message: '--no-db: the database is left as it is' }
  if (opts.restore) return { kind: 'restore', backup: opts.restore }
  const migrated = deploysBetween(history, target, from).filter(h => h.migrated)
  if (!migrated.length)
    return { kind: 'nothing', message: `no migration ran since ${target}: the database needs no change` }
  const first = migrated[0] as HistoryEntry
  const names = migrated.map(h => h.release)
  const mode = databaseRollbackMode(config)
  const down = config.stages.migrate?.down
  if (mode === 'down' && down && typeof first.revision === 'string' && from)
    return {
      kind: 'down',
      command: downCommand(down, first.revision),
      revision: first.revision,
      release: from,
      migrated: names
    }
  if (mode === 'none')
    return {
      kind: 'nothing',
      warn: true,
      message: `${names.join(', ')} migrated the database; rollback.database is none: left as it is`
    }
  const backup = first.backup
  return {
    kind: 'refused',
    message: `${names.join(', ')} migrated the database after ${target}. ${
      backup
        ? `Going back needs the database as it was before: the backup ${backup} taken then. Restoring it loses every write made since; to do that pass --restore ${backup}`
        : 'No backup from before that migration is recorded; restore one by name with --restore NAME'
    }, or pass --no-db to keep the database as it is.`
  }
}

/**
 * The database step of a manual rollback, before the code switches: run the down command to the revision
 * the target was verified with (after a verified safety backup, or with --yes when there are no backups),
 * restore a named backup, or nothing. Restoring a backup loses the writes made since it was taken, so it
 * never happens unless asked for by name. Its undo (the rollback failed later) puts the database back as it
 * was when the rollback started: the safety backup, or the left release's migrate command.
 */
export function rollbackDatabaseStage(
  target: () => string,
  from: () => string | undefined,
  history: () => HistoryEntry[],
  opts: RollbackDatabaseOptions,
  state: MigrationState
): ProductStage<RunStage> {
  return {
    name: 'database',
    scope: 'primary',
    effect: 'data',
    needsUndo: () => state.undoWith !== undefined,
    async run(ctx) {
      const p = primaryOf(ctx)
      const plan = planRollbackDatabase(ctx.config, history(), target(), from(), opts)
      if (plan.kind === 'nothing') {
        if (plan.warn) ctx.log.warn(plan.message)
        else ctx.log.info(plan.message)
        return
      }
      if (plan.kind === 'refused')
        throw new StageError('database', plan.message, p.host.name, ExitCode.badInput)
      if (plan.kind === 'restore') {
        // verify, safety backup, restore: a restore that fails is undone by this stage's undo (the safety
        // backup put back), which the orchestrator runs like every other
        const checked = await checkBackup(ctx, p, plan.backup, 'database')
        state.safety = await takeSafetyBackup(ctx, p, 'database', `restore of ${plan.backup}`)
        state.started = true
        state.undoWith = 'safety'
        const { plan: bp, info, verified } = checked
        try {
          await restoreArtifacts(ctx, p, bp, info, verified, { stage: 'database', only: 'databases' })
        } catch (e) {
          // PostgreSQL and SQLite restores are all or nothing: a failed one left the data as it was
          if (e instanceof RestoreError && !e.changed) state.undoWith = undefined
          throw e
        }
        state.database = 'restored'
        ctx.log.info(
          `database restored from ${plan.backup} (safety backup of what was there: ${state.safety.name})`,
          p.host.name
        )
        return
      }
      const what = `\`${plan.command}\` in releases/${plan.release} on ${p.host.name} (it undoes the migrations of ${plan.migrated.join(', ')})`
      if (backupsOn(ctx.config)) {
        state.safety = await takeSafetyBackup(ctx, p, 'database', `rollback to ${target()}`)
      } else if (!opts.yes) {
        throw new StageError(
          'database',
          `rolling back to ${target()} runs ${what}, and no backup: is configured, so no safety backup can be taken first: whatever it drops is lost. Run again with --yes (Action input yes: true) to run it anyway, or with --no-db to keep the database as it is`,
          p.host.name,
          ExitCode.badInput
        )
      } else {
        ctx.log.warn(`--yes: running ${what} without a safety backup (no backup: configured)`, p.host.name)
      }
      state.started = true
      state.undoWith = state.safety ? 'safety' : 'up'
      const down = ctx.config.stages.migrate?.down as string
      const why = await runDown(ctx, p, plan.release, down, plan.revision, 'database')
      if (why) throw new StageError('database', why, p.host.name)
      state.database = 'down'
    },
    async undo(ctx) {
      const p = primaryOf(ctx)
      if (state.undoWith === 'safety' && state.safety) {
        const name = state.safety.name as BackupName
        ctx.log.info(
          `putting the database back as it was before the rollback: safety backup ${name}`,
          p.host.name
        )
        await restoreSafety(ctx, p, planFor(ctx, p, 'rollback'), name, 'rollback', 'databases')
        state.database = 'put-back'
        ctx.log.info(`database restored from the safety backup ${name}`, p.host.name)
        return
      }
      const m = ctx.config.stages.migrate
      const leaving = from()
      if (state.undoWith !== 'up' || !m || !leaving) return
      ctx.log.info(`migrating the database up again for releases/${leaving} (no safety backup to restore)`)
      await runOn(
        ctx,
        p,
        inRelease(p.layout, leaving, 'migrate', m.command, hookEnv(ctx, p, leaving, 'rollback')),
        { stage: 'rollback' }
      )
      if (m.revision) {
        const now = await readRevision(ctx, p, leaving, 'rollback', m.revision)
        ctx.log.info(`database revision read back: ${shown(now)}`, p.host.name)
      }
      state.database = 'put-back'
    }
  }
}
