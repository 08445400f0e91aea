import { dirname, resolve } from 'node:path'
import { primaryOf, type HostSession, type RunContext } from '../host/context.js'
import { StageError, errorMessage } from '../core/errors.js'
import { ExitCode } from '../core/exit.js'
import type { ProductStage } from './stage.js'
import { backupConfigOf, resolvePlan } from '../backup-engines/plan.js'
import { downloadBackup } from '../backup/ops/download.js'
import { findBackup, listBackups, type BackupInfo } from '../backup/ops/list.js'
import { pruneBackups } from '../backup/ops/prune.js'
import { restoreArtifacts, restoreSafety, RestoreError, type RestoreResult } from '../backup/ops/restore.js'
import { planFor, type BackupResult } from '../backup/ops/shared.js'
import { takeBackup } from '../backup/ops/take.js'
import { verifyBackup, type VerifyResult } from '../backup/ops/verify.js'
import { manifestFile, type BackupName } from '../backup-engines/name.js'

/** Where `download: true` and `backups download` put copies on the runner by default: next to the log. */
export function runnerBackupDir(ctx: RunContext): string {
  return ctx.log.file ? dirname(ctx.log.file) : resolve(ctx.config.log_dir)
}

/** `download: true` without `encrypt`: the copy next to the log is the data in clear. */
function plainDownloadWarning(name: string, dir: string): string {
  return `backup ${name} is not encrypted: download: true puts a plain copy of the data (the database dump) in ${dir} on the runner, next to the log; a workflow that uploads the log dir as an artifact (the quick start does) publishes it with the log. Set backup.encrypt.recipients, or upload only the *.log files`
}

/**
 * After a new backup verified: copy it to the runner when `download: true` (a failed copy is a warning:
 * the backup on the host is whole), then prune by retention (failures are warnings too).
 */
async function afterBackup(ctx: RunContext, s: HostSession, result: BackupResult, stage: string) {
  const b = backupConfigOf(ctx.config)
  if (!b) return
  const plan = resolvePlan(ctx.config.app, b, s.layout, ctx.config.env)
  if (b.download) {
    if (!plan.recipients.length)
      ctx.log.warn(plainDownloadWarning(result.name, runnerBackupDir(ctx)), s.host.name)
    if (ctx.dryRun) {
      // plan: what the copy would do; the backup does not exist, so nothing is listed or streamed
      ctx.dryRun.runner(
        `on the runner: copy backup ${result.name} from ${s.host.name} into ${runnerBackupDir(ctx)}, each file checked against ${manifestFile(result.name)}`,
        undefined,
        s.host.name
      )
    } else
      try {
        const listing = await listBackups(ctx, s, plan, stage)
        await downloadBackup(
          ctx,
          s,
          plan,
          findBackup(listing, result.name, s, stage),
          runnerBackupDir(ctx),
          stage
        )
      } catch (e) {
        ctx.log.warn(`could not copy backup ${result.name} to the runner: ${errorMessage(e)}`, s.host.name)
      }
  }
  try {
    await pruneBackups(ctx, s, plan, { stage, apply: true, protect: [result.name] })
  } catch (e) {
    ctx.log.warn(`could not prune old backups: ${errorMessage(e)}`, s.host.name)
  }
}

export interface DeployBackup {
  /** Empty when backups are off or not configured (then one log line says so). */
  stages: ProductStage[]
  result: () => BackupResult | undefined
}

/**
 * The deploy's `backup` stage, between test and deploy: a verified backup on the primary before anything
 * changes, or the deploy does not start. It changes nothing live, so it has no undo.
 */
export function deployBackup(ctx: RunContext, release: () => string): DeployBackup {
  const b = ctx.config.backup
  if (b === undefined) {
    ctx.log.info(
      'no backup: section in the config, so this deploy takes no backup (configure one, see docs/backups.md, or set backup: false)'
    )
    return { stages: [], result: () => undefined }
  }
  if (!backupConfigOf(ctx.config)) {
    ctx.log.info('backup: false: this deploy takes no backup')
    return { stages: [], result: () => undefined }
  }
  let result: BackupResult | undefined
  return {
    result: () => result,
    stages: [
      {
        name: 'backup',
        async run(c) {
          const s = primaryOf(c)
          result = await takeBackup(c, s, {
            stage: 'backup',
            reason: `before deploy of ${release()}`,
            release: release()
          })
          await afterBackup(c, s, result, 'backup')
        }
      }
    ]
  }
}

/** `safe-deploy backup [--keep]`: one verified backup (kept out of retention with --keep), then retention. */
export function backupNowStage(out: { result?: BackupResult }, opts: { keep?: boolean } = {}): ProductStage {
  return {
    name: 'backup',
    async run(ctx) {
      const s = primaryOf(ctx)
      out.result = await takeBackup(ctx, s, { stage: 'backup', reason: 'manual', keep: opts.keep })
      await afterBackup(ctx, s, out.result, 'backup')
    }
  }
}

export interface RestoreState {
  info?: BackupInfo
  verified?: VerifyResult
  safety?: BackupResult
  restored?: RestoreResult
}

/**
 * `safe-deploy restore NAME`: check (the backup verifies), safety-backup (of the current state), restore.
 * If the restore fails after changing something, the orchestrator undoes it by restoring the safety
 * backup (exit 4); if that fails too, exit 5.
 */
export function restoreStages(name: BackupName, state: RestoreState): ProductStage[] {
  let changed = false
  let failedAtomically = false
  return [
    {
      name: 'check',
      async run(ctx) {
        const s = primaryOf(ctx)
        const plan = planFor(ctx, s, 'check')
        state.info = findBackup(await listBackups(ctx, s, plan, 'check'), name, s, 'check')
        state.verified = await verifyBackup(ctx, s, plan, state.info, 'check')
        if (state.verified.unchecked.length)
          throw new StageError(
            'check',
            `backup ${name} is encrypted: restoring it needs the age identity (backup.encrypt.identity: env:AGE_IDENTITY)`,
            s.host.name,
            ExitCode.badInput
          )
        ctx.log.info(`backup ${name} verified: ${state.verified.checked.join(', ')}`, s.host.name)
      }
    },
    {
      name: 'safety-backup',
      async run(ctx) {
        state.safety = await takeBackup(ctx, primaryOf(ctx), {
          stage: 'safety-backup',
          reason: `before restore of ${name}`
        })
      }
    },
    {
      name: 'restore',
      // what the app serves changes with its data: a restore put back is a rollback (exit 4)
      effect: 'live',
      changedLive: () => changed && !failedAtomically,
      async run(ctx) {
        const s = primaryOf(ctx)
        const plan = planFor(ctx, s, 'restore')
        try {
          state.restored = await restoreArtifacts(
            ctx,
            s,
            plan,
            state.info as BackupInfo,
            state.verified as VerifyResult,
            { stage: 'restore', onChange: () => (changed = true) }
          )
        } catch (e) {
          // PostgreSQL (one transaction) and SQLite (backup API) leave nothing behind when they fail
          if (e instanceof RestoreError && !e.changed) failedAtomically = true
          throw e
        }
      },
      async undo(ctx) {
        const s = primaryOf(ctx)
        const safety = state.safety
        if (!safety) return
        ctx.log.info(`putting back the safety backup ${safety.name}`, s.host.name)
        await restoreSafety(ctx, s, planFor(ctx, s, 'rollback'), safety.name, 'rollback')
        ctx.log.info(`the data is as it was before the restore (safety backup ${safety.name})`, s.host.name)
      }
    }
  ]
}
