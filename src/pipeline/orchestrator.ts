import { ExitCode } from '../config/errors.js'
import type { RunContext } from './context.js'
import { startLease, type Lease } from './lease.js'
import { StageError, errorMessage } from './errors.js'
import type { Stage, StageRecord } from './stage.js'

export interface Outcome {
  records: StageRecord[]
  failure?: { stage: string; host?: string; message: string }
  /** Something live changed and was put back. */
  rolledBack: boolean
  /** Something live changed and could not be put back: a person must look. */
  rollbackFailed?: string
  exitCode: number
}

const seconds = (t0: number) => Math.round((performance.now() - t0) / 100) / 10

/**
 * Runs stages in order. On a failure, undoes the failed stage and then every completed one, newest first.
 * This is the only place that decides what is undone.
 */
export async function runStages(
  ctx: RunContext,
  stages: Stage[],
  hooks: { afterRollback?: (ctx: RunContext) => Promise<void> } = {}
): Promise<Outcome> {
  // the stages run under the lock's lease: its signal is also aborted when the lock is lost
  const outer = ctx.signal
  const lease = startLease(ctx)
  ctx.signal = lease.signal
  try {
    return await runUnderLease(ctx, stages, hooks, lease, outer)
  } finally {
    lease.stop()
    ctx.signal = outer
  }
}

async function runUnderLease(
  ctx: RunContext,
  stages: Stage[],
  hooks: { afterRollback?: (ctx: RunContext) => Promise<void> },
  lease: Lease,
  outer: AbortSignal
): Promise<Outcome> {
  const interrupted = () => lease.lost ?? 'interrupted'
  const records: StageRecord[] = []
  const done: Stage[] = []
  let failed: { stage: Stage; error: unknown; started: boolean } | undefined

  for (const stage of stages) {
    if (ctx.signal.aborted) {
      failed = {
        stage,
        error: new StageError(stage.name, `${interrupted()} before this stage started`),
        started: false
      }
      records.push({ name: stage.name, status: 'skipped', duration_s: 0 })
      break
    }
    ctx.log.setStage(stage.name)
    ctx.log.startGroup(stage.name)
    const t0 = performance.now()
    try {
      await stage.run(ctx)
      records.push({ name: stage.name, status: 'ok', duration_s: seconds(t0) })
      ctx.log.info(`${stage.name} done (${seconds(t0)} s)`)
      done.push(stage)
    } catch (error) {
      const host = error instanceof StageError ? error.host : undefined
      const message = ctx.signal.aborted ? `${interrupted()}: ${errorMessage(error)}` : errorMessage(error)
      records.push({ name: stage.name, status: 'failed', duration_s: seconds(t0), error: message, host })
      ctx.log.error(`FAILED: ${message}`, host)
      failed = { stage, error, started: true }
    } finally {
      ctx.log.endGroup()
    }
    if (failed) break
  }
  if (!failed) return { records, rolledBack: false, exitCode: ExitCode.ok }

  const err = failed.error
  const failure = {
    stage: failed.stage.name,
    host: err instanceof StageError ? err.host : undefined,
    message:
      ctx.signal.aborted && !errorMessage(err).startsWith(interrupted())
        ? `${interrupted()}: ${errorMessage(err)}`
        : errorMessage(err)
  }
  const newestFirst = [...(failed.started ? [failed.stage] : []), ...[...done].reverse()]
  const ordered = [...newestFirst.filter(s => s.undoFirst), ...newestFirst.filter(s => !s.undoFirst)]
  const live = ordered.some(s => s.changedLive?.())
  // only what has something to undo: a stage without undo matters only when it changed live state
  const toUndo = ordered.filter(s => (s.undo ? s.needsUndo?.() !== false : s.changedLive?.()))
  let rollbackFailed: string | undefined
  let undidLive = false

  // An interrupted run (or one that lost its lock) still cleans up: the undo steps get their own signal.
  lease.settle()
  ctx.signal = ctx.signal.aborted ? new AbortController().signal : outer
  const undoCtx = ctx
  // no `== rollback` header with nothing under it (a failed preflight has nothing to undo)
  const grouped = toUndo.some(s => s.undo)
  undoCtx.log.setStage('rollback')
  if (grouped) undoCtx.log.startGroup('rollback')
  for (const stage of toUndo) {
    const t0 = performance.now()
    if (!stage.undo) {
      if (stage.changedLive?.())
        rollbackFailed ??= `${stage.name} changed live state and cannot be undone automatically`
      continue
    }
    const wasLive = stage.changedLive?.() ?? false
    try {
      await stage.undo(undoCtx, { live })
      if (wasLive) undidLive = true
      records.push({ name: `undo ${stage.name}`, status: 'undone', duration_s: seconds(t0) })
    } catch (e) {
      const message = errorMessage(e)
      records.push({
        name: `undo ${stage.name}`,
        status: 'undo-failed',
        duration_s: seconds(t0),
        error: message
      })
      undoCtx.log.error(
        `undo of ${stage.name} FAILED: ${message}`,
        e instanceof StageError ? e.host : undefined
      )
      if (wasLive || stage.undoMustSucceed?.()) rollbackFailed ??= `undo of ${stage.name}: ${message}`
    }
  }
  if (live && !rollbackFailed && hooks.afterRollback) {
    try {
      await hooks.afterRollback(undoCtx)
    } catch (e) {
      rollbackFailed = `the previous release is not healthy after the rollback: ${errorMessage(e)}`
      undoCtx.log.error(rollbackFailed, e instanceof StageError ? e.host : undefined)
    }
  }
  if (grouped) undoCtx.log.endGroup()
  const exitCode = rollbackFailed ? ExitCode.rollbackFailed : live ? ExitCode.rolledBack : failedExit(err)
  return { records, failure, rolledBack: undidLive && !rollbackFailed, rollbackFailed, exitCode }
}

function failedExit(e: unknown): number {
  if (e instanceof StageError && e.exitCode === ExitCode.badInput) return ExitCode.badInput
  return ExitCode.failedNothingChanged
}

/** runStages for entry points: a bug that escapes a stage becomes an `internal` failure (exit 1), not a crash. */
export async function runStagesSafely(
  ctx: RunContext,
  stages: Stage[],
  hooks: { afterRollback?: (ctx: RunContext) => Promise<void> } = {}
): Promise<Outcome> {
  try {
    return await runStages(ctx, stages, hooks)
  } catch (e) {
    return {
      records: [],
      failure: { stage: 'internal', message: errorMessage(e) },
      rolledBack: false,
      exitCode: ExitCode.failure
    }
  }
}
