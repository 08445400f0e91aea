import { ExitCode } from '../core/exit.js'
import { onEveryHost, primaryOf, type HostSession, type RunContext } from '../host/context.js'
import { startLease, type Lease } from '../host/lease.js'
import { StageError, errorMessage } from '../core/errors.js'
import { exitCode, reverifyNow, undoFailureNeedsPerson, undoOrder, type Touched } from './policy.js'
import type { HostStage, Stage, StageEvent, StageRecord } from './stage.js'
import type { HostResult } from './result.js'
import { sleep } from './checks.js'
import { freshSignal } from '../core/signal.js'

export interface Outcome {
  records: StageRecord[]
  failure?: { stage: string; host?: string; message: string }
  /** Something live changed and was put back. */
  rolledBack: boolean
  /** Something live changed and could not be put back: a person must look. */
  rollbackFailed?: string
  exitCode: number
  /** What each host went through, by host name (hostResultsOf makes the per-host report of it). */
  hosts?: Record<string, HostTrack>
}

/** One host's part of a run, as the orchestrator saw it. */
export interface HostTrack {
  /** The last stage started on this host. */
  stage?: string
  /** This host's own first error (of the stage `stage`: one that failed here, or one that named this host failing). */
  error?: string
  /** The first undo that failed here, as `undo <stage>: <message>`. */
  undoError?: string
  /** Something live changed here in this run (a live stage went live on it). */
  live?: boolean
  /** The live change was undone here (its undo passed; a failed re-verify sets undoError). */
  undone?: boolean
  durationS: number
}

/**
 * The rollout: consecutive host stages (switch, verify) that run together batch by batch: batch 1 through
 * every one of them, a pause, batch 2, ... Each (stage, host) goes into the undo ledger as it starts, so a
 * failure in batch n undoes exactly the hosts batches 1..n switched, and later batches never start.
 */
export interface RolloutOptions {
  stages: string[]
  /** Host names per batch, in order (src/pipeline/rollout.ts); hosts not named run in a last batch. */
  batches: string[][]
  /** Pause after a batch passed, before the next one starts (ms). */
  waitMs?: number
  /** Before the first batch starts, as part of its first stage: a failure fails it before any host starts. */
  ready?: (ctx: RunContext) => Promise<void>
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
  /** Given: its stages run batch by batch, together (maxParallel does not apply: the batch is their limit). */
  rollout?: RolloutOptions
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

type Track = (stage: Stage, s: HostSession, fn: () => Promise<void>) => Promise<void>

async function runHostStage(
  ctx: RunContext,
  stage: HostStage,
  entry: Entry,
  opts: RunStagesOptions,
  track: Track
) {
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
          return track(stage, s, () => stage.run(ctx, s))
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

  // what each host went through, for the per-host report
  const tracks = new Map<string, HostTrack & { t0?: number; t1?: number }>()
  const trackOf = (name: string) => {
    let h = tracks.get(name)
    if (!h) tracks.set(name, (h = { durationS: 0 }))
    return h
  }
  const blame = (e: unknown, field: 'error' | 'undoError', stage: string) => {
    const host = e instanceof StageError ? e.host : undefined
    if (host && ctx.sessions.some(s => s.host.name === host)) {
      const h = trackOf(host)
      if (field === 'error' && h.error === undefined) h.stage = stage
      // the report gives the stage beside the error; an undo's error says which undo
      h[field] ??= field === 'error' ? errorMessage(e) : `${stage}: ${errorMessage(e)}`
    }
  }
  const track: Track = async (stage, s, fn) => {
    const h = trackOf(s.host.name)
    h.stage = stage.name
    h.t0 ??= performance.now()
    try {
      await fn()
    } catch (e) {
      h.error ??= errorMessage(e)
      throw e
    } finally {
      h.t1 = performance.now()
    }
  }
  const hostsOut = (): Record<string, HostTrack> =>
    Object.fromEntries(
      ctx.sessions.map(s => {
        const { t0, t1, ...h } = trackOf(s.host.name)
        const durationS = t0 !== undefined && t1 !== undefined ? Math.round((t1 - t0) / 100) / 10 : 0
        return [s.host.name, { ...h, durationS }]
      })
    )

  /** Runs one stage (or one batch of a rollout stage): its events, its record, its failure. */
  const step = async (
    stage: Stage,
    body: () => Promise<void>,
    batch?: { n: number; of: number; hosts: string[] }
  ): Promise<{ stage: Stage; error: unknown } | undefined> => {
    const which = batch ? { batch: batch.n } : {}
    if (ctx.signal.aborted) {
      const when =
        batch && batch.n > 1
          ? `before batch ${batch.n} of ${batch.of} (${batch.hosts.join(', ')}) started`
          : 'before this stage started'
      records.push({ name: stage.name, status: 'skipped', duration_s: 0, ...which })
      return { stage, error: new StageError(stage.name, `${interrupted()} ${when}`) }
    }
    ctx.log.setStage(stage.name)
    await tell({
      type: 'stage-started',
      stage: stage.name,
      phase: 'run',
      ...(batch ? { ...which, hosts: batch.hosts } : {})
    })
    if (batch) ctx.log.info(`batch ${batch.n} of ${batch.of}: ${batch.hosts.join(', ')}`)
    const t0 = performance.now()
    let failure: { stage: Stage; error: unknown } | undefined
    try {
      await body()
      records.push({ name: stage.name, status: 'ok', duration_s: seconds(t0), ...which })
      ctx.log.info(
        `${stage.name} done${batch ? ` (batch ${batch.n} of ${batch.of})` : ''} (${seconds(t0)} s)`
      )
    } catch (error) {
      const host = error instanceof StageError ? error.host : undefined
      const message = ctx.signal.aborted ? `${interrupted()}: ${errorMessage(error)}` : errorMessage(error)
      records.push({
        name: stage.name,
        status: 'failed',
        duration_s: seconds(t0),
        error: message,
        host,
        ...which
      })
      ctx.log.error(`FAILED: ${message}`, host)
      blame(error, 'error', stage.name)
      failure = { stage, error }
    }
    await tell(finished(records.at(-1) as StageRecord, 'run'))
    return failure
  }

  /** The rollout's stages, batch by batch (see RolloutOptions). */
  const runRollout = async (group: HostStage[], rollout: RolloutOptions) => {
    const batches = batchesOf(ctx.sessions, rollout.batches)
    const entries = new Map<HostStage, Entry>()
    const begun: HostStage[] = []
    let failure: { stage: Stage; error: unknown } | undefined
    try {
      for (const [b, hosts] of batches.entries()) {
        const names = hosts.map(s => s.host.name)
        const batch = batches.length > 1 ? { n: b + 1, of: batches.length, hosts: names } : undefined
        if (b > 0 && rollout.waitMs && !ctx.signal.aborted) {
          ctx.log.info(
            `batch ${b} of ${batches.length} passed; waiting ${rollout.waitMs / 1000} s (rollout.wait)`
          )
          // a stop during the wait: the next batch's step says so and starts nothing
          await sleep(rollout.waitMs, ctx.signal).catch(() => undefined)
        }
        for (const st of group) {
          failure = await step(
            st,
            async () => {
              let entry = entries.get(st)
              if (!entry) {
                entry = { stage: st, hosts: [] }
                entries.set(st, entry)
                ledger.push(entry)
              }
              const e = entry
              if (b === 0 && st === group[0]) await rollout.ready?.(ctx)
              if (!begun.includes(st)) {
                begun.push(st)
                await st.begin?.(ctx)
              }
              await onEveryHost(
                ctx,
                s => {
                  e.hosts.push(s)
                  return track(st, s, () => st.run(ctx, s))
                },
                { hosts }
              )
            },
            batch
          )
          if (failure) return failure
        }
      }
    } finally {
      for (const st of begun) {
        try {
          await st.end?.(ctx, !failure)
        } catch (e) {
          failure ??= { stage: st, error: e }
        }
      }
    }
    return failure
  }

  for (let i = 0; i < stages.length && !failed;) {
    const stage = stages[i] as Stage
    const r = opts.rollout
    if (r && stage.scope === 'each-host' && r.stages.includes(stage.name)) {
      const group: HostStage[] = []
      for (let st = stages[i]; st?.scope === 'each-host' && r.stages.includes(st.name); st = stages[++i])
        group.push(st)
      failed = await runRollout(group, r)
      continue
    }
    i++
    failed = await step(stage, async () => {
      const entry: Entry = { stage, hosts: [] }
      ledger.push(entry)
      if (stage.scope === 'each-host') await runHostStage(ctx, stage, entry, opts, track)
      else {
        const primary = stage.scope === 'primary' && ctx.sessions.length ? primaryOf(ctx) : undefined
        if (primary) await track(stage, primary, () => stage.run(ctx))
        else await stage.run(ctx)
      }
    })
  }
  if (!failed) return { records, rolledBack: false, exitCode: ExitCode.ok, hosts: hostsOut() }

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
  // the hosts where something live changed: the deploy stage keeps its release there, removes it elsewhere
  const liveHosts = new Set(
    ledger.flatMap(e =>
      e.stage.effect === 'live' && e.stage.scope === 'each-host'
        ? e.hosts.filter(s => (e.stage as HostStage).changedLive?.(s) ?? true)
        : []
    )
  )
  for (const s of liveHosts) trackOf(s.host.name).live = true
  const liveOn = (s: HostSession) => liveHosts.has(s)
  const toUndo = ordered.filter(t => hasWork(t.item))
  let rollbackFailed: string | undefined
  let undidLive = false

  // An interrupted run (or one that lost its lock) still cleans up: the undo steps get their own signal.
  lease.settle()
  ctx.signal = ctx.signal.aborted ? freshSignal() : outer
  // the rollback section holds the undos that run (none: no `== rollback` header); the last one closes it
  const lastUndo = toUndo.reduce((last, t, i) => (t.item.stage.undo ? i : last), -1)
  ctx.log.setStage('rollback')
  const fail = (t: Touched<Entry>, record: StageRecord, e: unknown, wasLive: boolean) => {
    const message = errorMessage(e)
    const host = e instanceof StageError ? e.host : undefined
    Object.assign(record, { status: 'undo-failed', error: message }, host ? { host } : {})
    blame(e, 'undoError', `undo ${t.item.stage.name}`)
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
                await undo(ctx, s, { live, liveOn })
                if (wasLiveHere) {
                  restored.push(s)
                  if (st.effect === 'live') trackOf(s.host.name).undone = true
                }
              } catch (e) {
                errors.push(e)
                const h = trackOf(s.host.name)
                h.undoError ??= `undo ${st.name}: ${errorMessage(e)}`
              } finally {
                trackOf(s.host.name).t1 = performance.now()
              }
            },
            { hosts, limit: opts.maxParallel }
          )
          if (errors.length) throw errors[0]
        } else {
          await st.undo(ctx, { live, liveOn })
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
  return {
    records,
    failure,
    rolledBack: undidLive && !rollbackFailed,
    rollbackFailed,
    exitCode: code,
    hosts: hostsOut()
  }
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
      exitCode: ExitCode.failure,
      hosts: {}
    }
  }
}

/**
 * The per-host report of a run (RunResult.hostResults): for each host of the run, what it served before and
 * after, the last stage it reached, how long, how it ended, and its own first error. `release` is the release
 * the run deployed or switched to. (Hosts left out of the run, skipped or unreachable, are added by whoever
 * selected them.)
 */
export function hostResultsOf(ctx: RunContext, outcome: Outcome, release: string | undefined): HostResult[] {
  return ctx.sessions.map(s => {
    const h = outcome.hosts?.[s.host.name] ?? { durationS: 0 }
    const before = s.current
    let result: HostResult['result']
    let after = before
    if (!outcome.failure) {
      result = 'ok'
      after = release ?? before
    } else if (h.live) {
      // a live change not put back here: its undo (or the re-verify) failed here, or never ran
      const notBack = h.undoError !== undefined || !h.undone
      result = notBack ? 'rollback-failed' : 'rolled-back'
      after = notBack ? undefined : before
    } else if (h.undoError && outcome.rollbackFailed) {
      result = 'rollback-failed'
    } else if (h.error) result = 'failed'
    else result = 'not-switched'
    const error = h.error ?? h.undoError
    return {
      name: s.host.name,
      ...(s.host.kind === 'local' ? {} : { address: s.host.address }),
      roles: s.host.roles ?? [],
      ...(before ? { before } : {}),
      ...(after ? { after } : {}),
      ...(h.stage ? { stage: h.stage } : {}),
      durationS: h.durationS,
      result,
      ...(error ? { error } : {})
    }
  })
}
