import { ExitCode } from '../core/exit.js'
import { onEveryHost, type HostSession, type RunContext } from '../host/context.js'
import { startLease, type Lease } from '../host/lease.js'
import { StageError, errorMessage } from '../core/errors.js'
import { exitCode, reverifyNow, undoFailureNeedsPerson, undoOrder, type Touched } from './policy.js'
import type { HostStage, Stage, StageEvent, StageRecord } from './stage.js'

export interface Outcome {
  records: StageRecord[]
  failure?: { stage: string; host?: string; message: string }
  /** Something live changed and was put back. */
  rolledBack: boolean
  /** Something live changed and could not be put back: a person must look. */
  rollbackFailed?: string
  exitCode: number
}

/** How host stages (`scope: 'each-host'`) run. */
export interface RunStagesOptions {
  /** At most this many hosts at once within a batch (default: all at once). */
  maxParallel?: number
  /**
   * Host names in groups run one after another, each group to the end before the next starts (default: one
   * group of every host). Hosts not named run in a last group.
   */
  batches?: string[][]
  /**
   * Told when each stage and each undo starts and finishes (the lifecycle's run events; the log's groups are
   * their subscriber). Awaited; one that throws is ignored.
   */
  onStage?: (e: StageEvent) => void | Promise<void>
}

const seconds = (t0: number) => Math.round((performance.now() - t0) / 100) / 10

/** One line of the undo ledger: a stage the run started, and for a host stage the hosts it started on. */
interface Entry {
  stage: Stage
  /** Hosts in the order the stage started on them (host stages only). */
  hosts: HostSession[]
}

/**
 * Runs stages in order, keeping the undo ledger of (stage, host) pairs; on a failure, undoes what the ledger
 * holds in the order src/pipeline/policy.ts gives, and takes the exit code from it.
 */
export async function runStages(
  ctx: RunContext,
  stages: Stage[],
  opts: RunStagesOptions = {}
): Promise<Outcome> {
  // the stages run under the lock's lease: its signal is also aborted when the lock is lost
  const outer = ctx.signal
  const lease = startLease(ctx)
  ctx.signal = lease.signal
  try {
    return await runUnderLease(ctx, stages, opts, lease, outer)
  } finally {
    lease.stop()
    ctx.signal = outer
  }
}

/** The groups of hosts a host stage runs in, one after another. */
export function batchesOf(sessions: HostSession[], batches: string[][] | undefined): HostSession[][] {
  if (!batches?.length) return [sessions]
  const seen = new Set<HostSession>()
  const groups = batches.map(names =>
    names.flatMap(n => {
      const s = sessions.find(x => x.host.name === n)
      if (!s || seen.has(s)) return []
      seen.add(s)
      return [s]
    })
  )
  groups.push(sessions.filter(s => !seen.has(s)))
  return groups.filter(g => g.length)
}

async function runHostStage(ctx: RunContext, stage: HostStage, entry: Entry, opts: RunStagesOptions) {
  let ok = false
  try {
    await stage.begin?.(ctx)
    const batches = batchesOf(ctx.sessions, opts.batches)
    for (const [i, batch] of batches.entries()) {
      // a run stopped between batches starts no further hosts
      if (i > 0 && ctx.signal.aborted) {
        const left = batches.slice(i).flat()
        throw new StageError(stage.name, `stopped before ${left.map(s => s.host.name).join(', ')}`)
      }
      await onEveryHost(
        ctx,
        s => {
          entry.hosts.push(s)
          return stage.run(ctx, s)
        },
        { hosts: batch, limit: opts.maxParallel }
      )
    }
    ok = true
  } finally {
    await stage.end?.(ctx, ok)
  }
}

/** Whether the entry changed what users see: only `live` stages can. */
function wentLive(e: Entry): boolean {
  const st = e.stage
  if (st.effect !== 'live') return false
  if (st.scope === 'each-host') return e.hosts.some(s => st.changedLive?.(s) ?? true)
  return st.changedLive?.() ?? true
}

/** The hosts of a host-stage entry with something to undo, newest first. */
function hostsToUndo(e: Entry): HostSession[] {
  const st = e.stage
  if (st.scope !== 'each-host') return []
  return [...new Set(e.hosts)].reverse().filter(s => st.needsUndo?.(s) !== false)
}

/** Whether the entry has an undo to run (a stage without one matters only when it went live). */
function hasWork(e: Entry): boolean {
  const st = e.stage
  if (!st.undo) return wentLive(e)
  return st.scope === 'each-host' ? hostsToUndo(e).length > 0 : st.needsUndo?.() !== false
}

async function runUnderLease(
  ctx: RunContext,
  stages: Stage[],
  opts: RunStagesOptions,
  lease: Lease,
  outer: AbortSignal
): Promise<Outcome> {
  const interrupted = () => lease.lost ?? 'interrupted'
  const tell = async (e: StageEvent) => {
    try {
      await opts.onStage?.(e)
    } catch {
      /* whoever listens never changes the run */
    }
  }
  const finished = (r: StageRecord, phase: 'run' | 'undo', lastUndo = false): StageEvent => ({
    type: 'stage-finished',
    stage: phase === 'undo' ? r.name.replace(/^undo /, '') : r.name,
    phase,
    status: r.status,
    durationS: r.duration_s,
    ...(r.error !== undefined ? { error: r.error } : {}),
    ...(r.host ? { host: r.host } : {}),
    ...(lastUndo ? { lastUndo: true as const } : {})
  })
  const records: StageRecord[] = []
  const ledger: Entry[] = []
  let failed: { stage: Stage; error: unknown } | undefined

  for (const stage of stages) {
    if (ctx.signal.aborted) {
      failed = { stage, error: new StageError(stage.name, `${interrupted()} before this stage started`) }
      records.push({ name: stage.name, status: 'skipped', duration_s: 0 })
      break
    }
    ctx.log.setStage(stage.name)
    await tell({ type: 'stage-started', stage: stage.name, phase: 'run' })
    const t0 = performance.now()
    const entry: Entry = { stage, hosts: [] }
    ledger.push(entry)
    try {
      if (stage.scope === 'each-host') await runHostStage(ctx, stage, entry, opts)
      else await stage.run(ctx)
      records.push({ name: stage.name, status: 'ok', duration_s: seconds(t0) })
      ctx.log.info(`${stage.name} done (${seconds(t0)} s)`)
    } catch (error) {
      const host = error instanceof StageError ? error.host : undefined
      const message = ctx.signal.aborted ? `${interrupted()}: ${errorMessage(error)}` : errorMessage(error)
      records.push({ name: stage.name, status: 'failed', duration_s: seconds(t0), error: message, host })
      ctx.log.error(`FAILED: ${message}`, host)
      failed = { stage, error }
    }
    await tell(finished(records.at(-1) as StageRecord, 'run'))
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
  const ordered = undoOrder<Entry>(
    ledger.map((e, index) => ({ effect: e.stage.effect ?? 'none', index, item: e }))
  )
  const live = ordered.some(t => wentLive(t.item))
  const toUndo = ordered.filter(t => hasWork(t.item))
  let rollbackFailed: string | undefined
  let undidLive = false

  // An interrupted run (or one that lost its lock) still cleans up: the undo steps get their own signal.
  lease.settle()
  ctx.signal = ctx.signal.aborted ? new AbortController().signal : outer
  // the rollback section holds the undos that run (none: no `== rollback` header); the last one closes it
  const lastUndo = toUndo.reduce((last, t, i) => (t.item.stage.undo ? i : last), -1)
  ctx.log.setStage('rollback')
  const fail = (t: Touched<Entry>, record: StageRecord, e: unknown, wasLive: boolean) => {
    const message = errorMessage(e)
    const host = e instanceof StageError ? e.host : undefined
    Object.assign(record, { status: 'undo-failed', error: message }, host ? { host } : {})
    ctx.log.error(`undo of ${t.item.stage.name} FAILED: ${message}`, host)
    if (undoFailureNeedsPerson(t.effect, wasLive))
      rollbackFailed ??= `undo of ${t.item.stage.name}: ${message}`
  }
  // the live group's records wait for the re-verify, whose failure is a failed undo of its stage
  let notBack = false
  let pending: { t: Touched<Entry>; record: StageRecord; restored: HostSession[]; wasLive: boolean }[] = []
  const flush = async (done: boolean) => {
    for (const [j, p] of pending.entries()) {
      records.push(p.record)
      await tell(finished(p.record, 'undo', done && j === pending.length - 1))
    }
    pending = []
  }
  for (const [i, t] of toUndo.entries()) {
    const st = t.item.stage
    const t0 = performance.now()
    const wasLive = wentLive(t.item)
    if (!st.undo) {
      rollbackFailed ??= `${st.name} changed live state and cannot be undone automatically`
      notBack = true
    } else {
      const record: StageRecord = { name: `undo ${st.name}`, status: 'undone', duration_s: 0 }
      await tell({ type: 'stage-started', stage: st.name, phase: 'undo' })
      const restored: HostSession[] = []
      try {
        if (st.scope === 'each-host') {
          const hosts = hostsToUndo(t.item)
          const errors: unknown[] = []
          const undo = st.undo.bind(st)
          await onEveryHost(
            ctx,
            async s => {
              try {
                const wasLiveHere = st.changedLive?.(s) ?? true
                await undo(ctx, s, { live })
                if (wasLiveHere) restored.push(s)
              } catch (e) {
                errors.push(e)
              }
            },
            { hosts, limit: opts.maxParallel }
          )
          if (errors.length) throw errors[0]
        } else {
          await st.undo(ctx, { live })
        }
        if (wasLive) undidLive = true
      } catch (e) {
        fail(t, record, e, wasLive)
      }
      record.duration_s = seconds(t0)
      pending.push({ t, record, restored, wasLive })
    }
    const groupDone = toUndo[i + 1]?.effect !== t.effect
    const liveUndoFailed = notBack || pending.some(p => p.record.status === 'undo-failed')
    if (groupDone && reverifyNow({ group: t.effect, live, liveUndoFailed })) {
      for (const p of pending) {
        const ps = p.t.item.stage
        if (ps.scope !== 'each-host' || !ps.recheck || !p.restored.length) continue
        const t1 = performance.now()
        try {
          await ps.recheck(
            ctx,
            ctx.sessions.filter(s => p.restored.includes(s))
          )
        } catch (e) {
          fail(p.t, p.record, e, p.wasLive)
        }
        p.record.duration_s = Math.round((p.record.duration_s + seconds(t1)) * 10) / 10
      }
    }
    if (groupDone) await flush(i >= lastUndo)
  }
  await flush(true)
  const code = exitCode({
    failed: true,
    live,
    needsPerson: rollbackFailed !== undefined,
    badInput: err instanceof StageError && err.exitCode === ExitCode.badInput
  })
  return { records, failure, rolledBack: undidLive && !rollbackFailed, rollbackFailed, exitCode: code }
}

/** runStages for entry points: a bug that escapes a stage becomes an `internal` failure (exit 1), not a crash. */
export async function runStagesSafely(
  ctx: RunContext,
  stages: Stage[],
  opts: RunStagesOptions = {}
): Promise<Outcome> {
  try {
    return await runStages(ctx, stages, opts)
  } catch (e) {
    return {
      records: [],
      failure: { stage: 'internal', message: errorMessage(e) },
      rolledBack: false,
      exitCode: ExitCode.failure
    }
  }
}
