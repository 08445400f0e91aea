import { resolve, join } from 'node:path'
import type { LoadedConfig } from '../config/load.js'
import { appendHistory, appendHostLog, parseKeyValues, pruneReleases } from '../commands/release.js'
import { releaseLock } from '../commands/lock.js'
import { combine } from '../commands/command.js'
import { sh } from '../commands/quote.js'
import { DeployLog, escapeControls, runStem, type Reporter } from '../report/log.js'
import { Redactor } from '../report/redact.js'
import { writeReport } from '../report/report.js'
import type { HistoryEntry } from '../release/history.js'
import {
  closeAll,
  localActor,
  lockSessionOf,
  primaryOf,
  runOn,
  type Actor,
  type HostSession,
  type RunContext
} from '../host/context.js'
import { errorMessage } from '../core/errors.js'
import { oneLine } from '../core/excerpt.js'
import {
  hostResultsOf,
  runStagesSafely,
  type Outcome,
  type RolloutOptions
} from '../pipeline/orchestrator.js'
import type { Stage } from '../pipeline/stage.js'
import type { BuildCache } from '../pipeline/buildlocal.js'
import { ProgressTracker, type RunProgress } from '../pipeline/progress.js'
import type { HostState, RunCommand, RunResult } from '../pipeline/result.js'
import { hasChecks, verifyHost } from '../pipeline/checks.js'
import { RunEvents, onEvent, type RunSubscriber } from './events.js'
import { stageGroups } from './groups.js'
import { skippedHostResults } from './hosts.js'
import { hostTable } from '../report/hosts.js'
import { freshSignal, runSignal } from '../core/signal.js'

export interface RunRequest {
  loaded: LoadedConfig
  reporter: Reporter
  signal?: AbortSignal
  actor?: Actor
  verbose?: boolean
  onLock?: (token: string | undefined) => void
  /** Told the run's progress as it goes (the Action saves it for its post step: src/flows/interrupted.ts). */
  onProgress?: (p: RunProgress) => void
  /** Where the log and report go (default: config log_dir, relative to the working directory). */
  logDir?: string
  now?: Date
  /** Told the run's events (src/engine/events.ts), after the JSON report; a subscriber never fails the run. */
  subscribers?: readonly RunSubscriber[]
  /** Where stages.build_local's `cache:` paths are kept (the CLI: a local dir; the Action: the GitHub cache). */
  buildCache?: BuildCache
  /** Deploying the commit of an older release builds it anew instead of rolling back to it (config redeploy). */
  redeploy?: boolean
  /** `--wait-lock`: wait up to this long for a lock another run holds (default: refuse at once). */
  waitLockMs?: number
}

export function newContext(req: RunRequest, command: string, started: Date, logFile = true): RunContext {
  const redactor = new Redactor(req.loaded.secrets)
  const logDir = resolve(req.logDir ?? req.loaded.config.log_dir)
  const file = logFile ? join(logDir, `${runStem(command, started)}.log`) : undefined
  return {
    loaded: req.loaded,
    config: req.loaded.config,
    log: new DeployLog(file, req.reporter, redactor),
    signal: req.signal ? runSignal(req.signal) : freshSignal(),
    actor: req.actor ?? localActor(),
    sessions: [],
    verbose: !!req.verbose,
    startedAt: started,
    ...(req.waitLockMs ? { waitLockMs: req.waitLockMs } : {})
  }
}

/** The word the verdict line starts with, per command. */
const WORD: Record<RunCommand, string> = {
  deploy: 'DEPLOYMENT',
  rollback: 'ROLLBACK',
  backup: 'BACKUP',
  restore: 'RESTORE',
  prune: 'PRUNE'
}

/** The one line that says how a run ended, for every command. */
export function verdict(
  command: RunCommand,
  outcome: Outcome,
  seconds: number,
  previous: string | undefined
): string {
  const word = WORD[command]
  const t = `(${seconds.toFixed(1)} s)`
  if (!outcome.failure) return `${word} SUCCESS ${t}`
  // one period after the failure, whether or not its message ends with one
  const where = `${word} FAILED at ${outcome.failure.stage}${outcome.failure.host ? ` on ${outcome.failure.host}` : ''}: ${oneLine(outcome.failure.message).replace(/[.]+$/, '')}`
  if (outcome.rollbackFailed) return `${where}. ROLLBACK FAILED: ${oneLine(outcome.rollbackFailed)} ${t}`
  // a manual rollback that went live and was undone: what served when it started serves again
  if (outcome.rolledBack && command === 'rollback')
    return `${where}. ${outcome.failure.stage === 'verify' ? 'Rollback failed its checks' : 'Rollback undone'}; back on ${previous ?? 'no release'} ${t}`
  if (outcome.rolledBack) return `${where}. ROLLED BACK ${t}`
  return `${where}. Nothing live was changed ${t}`
}

/**
 * What each host looks like after a rollback failed (exit 5), for the log and `hostStates`: where `current`
 * points and what that release is to this run, and whether it passes the checks (one attempt); for a host out
 * of reach, what it served before the run and what the run last did to it. Best effort, with a fresh signal.
 */
async function describeHosts(ctx: RunContext, release: string | undefined): Promise<HostState[]> {
  const c: RunContext = { ...ctx, signal: freshSignal() }
  return Promise.all(
    ctx.sessions.map(async (s): Promise<HostState> => {
      const host = s.host.name
      let kv: Map<string, string[]>
      try {
        const cur = sh(s.layout.current)
        const r = await s.t.exec(
          `printf 'CURRENT=%s\\n' "$(readlink ${cur})"; if [ -d ${cur}/ ]; then echo EXISTS=1; fi`,
          { timeoutMs: 15_000 }
        )
        kv = parseKeyValues(r.stdout)
      } catch (e) {
        const before = s.current ? `releases/${s.current}` : 'no release'
        return {
          host,
          reachable: false,
          note: `unreachable (${errorMessage(e)}), so what it serves is unknown; before this run it served ${before}; ${s.switched ?? 'this run did not switch it'}`
        }
      }
      const current = kv.get('CURRENT')?.[0]?.replace(/^releases\//, '') || undefined
      if (!current) return { host, reachable: true, note: 'no release is current (`current` is missing)' }
      let what = `current -> releases/${current}`
      if (current === release) what += ', the release this run switched to'
      else if (current === s.current) what += ', the release that served before this run'
      if (!kv.has('EXISTS'))
        return { host, current, reachable: true, note: `${what}, which does not exist on disk` }
      if (!hasChecks(c, s)) return { host, current, reachable: true, note: `${what}; no checks configured` }
      try {
        await verifyHost(c, s, current, 'finish', 1)
        return { host, current, reachable: true, healthy: true, note: `${what}; it passes its checks` }
      } catch (e) {
        const why = errorMessage(e)
        return {
          host,
          current,
          reachable: true,
          healthy: false,
          note: `${what}; it fails its checks: ${why}`
        }
      }
    })
  )
}

/** What a command runs and what it tells the lifecycle about itself. */
export interface RunPlan {
  stages: Stage[]
  /** The release this run deployed or switched to (deploy, rollback). */
  release?: () => string | undefined
  /** The release that served before. */
  previous?: () => string | undefined
  /** Given: the run writes a history line on every host (deploy, rollback), with these fields. */
  history?: (o: Outcome) => Partial<HistoryEntry>
  /** Whether this outcome gets a history line (default: yes). */
  recorded?: (o: Outcome) => boolean
  /** The backup this run took: in history, the result and the outputs. */
  backup?: () => { name: string; path: string } | undefined
  /** Where the run finishes (host log, history; the lock on the primary): every host (default) or the primary. */
  finishOn?: 'every-host' | 'primary'
  /** The stages that switch and verify, batch by batch (rollout:); without, they run as stages do. */
  rollout?: RolloutOptions
  /** Fields of the result only this command has (a backup's files, what a restore put back). */
  details?: (o: Outcome) => Partial<RunResult>
  /** Removes what the run made on the runner (the build-local staging dir), after the stages; never throws. */
  cleanup?: () => void
}

export interface RunSpec {
  command: RunCommand
  /** The first log line, after `safe-deploy `. */
  intro: (ctx: RunContext) => string
  plan: (ctx: RunContext) => RunPlan
  /** Saves progress for the Action's post step (deploy, rollback). */
  progress?: boolean
  /** The command's own subscribers (a deploy's notifications), told after the request's. */
  subscribers?: (ctx: RunContext) => RunSubscriber[]
}

/**
 * The JSON report, the first subscriber of every run. When it cannot be written (a full runner disk) the run
 * is not changed: one warning, and `reportFile` is cleared so that no output points at a missing file.
 */
function reportFile(ctx: RunContext): RunSubscriber {
  return onEvent('the report file', 'run-finished', ({ result }) => {
    if (!result.reportFile) return
    try {
      writeReport(result.reportFile, result, ctx.log.redactor)
    } catch (e) {
      ctx.log.warn(`cannot write the report file ${result.reportFile} (${errorMessage(e)})`)
      result.reportFile = undefined
    }
  })
}

const seconds = (t0: number) => Math.round((performance.now() - t0) / 100) / 10

/**
 * The one lifecycle of every command that changes a host: opens the context and the log, runs the stages
 * (the orchestrator takes and renews the lock), writes history and the host log, releases the lock, writes the
 * JSON report and the verdict, and tells the subscribers each step of it.
 */
export async function runLifecycle(req: RunRequest, spec: RunSpec): Promise<RunResult> {
  const { command } = spec
  const started = req.now ?? new Date()
  const t0 = performance.now()
  const ctx = newContext(req, command, started)
  ctx.onLock = req.onLock
  const redact = (t: string) => ctx.log.redactor.redact(t)
  const events = new RunEvents(
    [
      reportFile(ctx),
      stageGroups(req.reporter),
      ...(req.subscribers ?? []),
      ...(spec.subscribers?.(ctx) ?? [])
    ],
    m => ctx.log.warn(m)
  )
  ctx.log.setStage('start')
  ctx.log.info(`safe-deploy ${spec.intro(ctx)}`)
  await events.emit({
    type: 'run-started',
    command,
    app: ctx.config.app,
    hosts: req.loaded.hosts.map(h => h.name),
    actor: ctx.actor.who,
    started: started.toISOString(),
    logFile: ctx.log.file
  })
  const p = spec.plan(ctx)
  const release = () => p.release?.()
  const previous = () => p.previous?.()
  const progress =
    spec.progress && req.onProgress && (command === 'deploy' || command === 'rollback')
      ? new ProgressTracker(ctx, command, started, req.onProgress, {
          release,
          backup: () => p.backup?.()?.name
        })
      : undefined
  ctx.progress = progress
  const tracked = progress ? progress.track(p.stages) : p.stages
  let chosen: string | undefined
  const outcome: Outcome = await runStagesSafely(ctx, tracked, {
    maxParallel: ctx.config.max_parallel,
    ...(p.rollout ? { rollout: p.rollout } : {}),
    onStage: async e => {
      const now = e.type === 'stage-started' ? release() : undefined
      if (now && !chosen) {
        chosen = now
        await events.emit({ type: 'release-chosen', release: now, previous: previous() })
      }
      await events.emit(e.type === 'stage-finished' && e.error ? { ...e, error: redact(e.error) } : e)
    }
  }).finally(() => p.cleanup?.())
  const finished = new Date()
  const durationS = seconds(t0)
  const status: RunResult['status'] = !outcome.failure
    ? 'success'
    : outcome.rolledBack
      ? 'rolled-back'
      : 'failed'
  ctx.log.setStage('finish')

  let hostStates: RunResult['hostStates']
  if (outcome.rollbackFailed) {
    hostStates = await describeHosts(ctx, release())
    for (const h of hostStates) {
      ctx.log.error(`state: ${h.note}`, h.host)
      await events.emit({ type: 'host-state', state: { ...h, note: redact(h.note) } })
    }
  }

  const target = release()
  const entry: HistoryEntry | undefined =
    p.history && target && ctx.lock && (p.recorded?.(outcome) ?? true)
      ? {
          type: command === 'rollback' ? 'rollback' : 'deploy',
          release: target,
          previous: previous() ?? null,
          commit: ctx.actor.commit ?? null,
          actor: ctx.actor.who,
          run: ctx.actor.run ?? null,
          status,
          // the target passed its checks and the run succeeded (with no checks configured nothing was verified:
          // the field is left out, and a success entry without it still counts as good for rollbacks)
          verified: status === 'success' && hasChecks(ctx) ? true : undefined,
          started: started.toISOString(),
          finished: finished.toISOString(),
          duration_s: durationS,
          hosts: ctx.sessions.map(s => s.host.name),
          primary: primaryOf(ctx).host.name,
          error: outcome.failure ? `${outcome.failure.stage}: ${redact(outcome.failure.message)}` : null,
          ...p.history(outcome)
        }
      : undefined

  // per host (deploy, rollback): a table in the log when there is more than one; skipped hosts said loudly
  const hostResults =
    command === 'deploy' || command === 'rollback'
      ? [...hostResultsOf(ctx, outcome, target), ...skippedHostResults(ctx)]
      : undefined
  if (hostResults && hostResults.length > 1) for (const line of hostTable(hostResults)) ctx.log.info(line)
  const skipped = ctx.unreachable?.map(u => u.host.name) ?? []
  const v = `${verdict(command, outcome, durationS, previous())}${skipped.length ? `; WARNING: SKIPPED ${skipped.join(', ')} (unreachable, --skip-unreachable): not deployed there` : ''}`
  ctx.log.write(v, { level: outcome.failure ? 'error' : skipped.length ? 'warn' : 'info' })

  if (ctx.lock && ctx.sessions.length) await finishOnHosts(ctx, entry, p.finishOn ?? 'every-host')
  progress?.finish()
  await closeAll(ctx)

  const result: RunResult = {
    command,
    status,
    exitCode: outcome.exitCode,
    release: target,
    previousRelease: previous(),
    backupName: p.backup?.()?.name,
    backupPath: p.backup?.()?.path,
    rolledBack: outcome.rolledBack,
    error: outcome.failure ? { ...outcome.failure, message: redact(outcome.failure.message) } : undefined,
    hostStates,
    stages: outcome.records,
    hosts: req.loaded.hosts.map(h => h.name),
    ...(hostResults
      ? { hostResults: hostResults.map(h => (h.error ? { ...h, error: redact(h.error) } : h)) }
      : {}),
    logFile: ctx.log.file,
    reportFile: ctx.log.file?.replace(/\.log$/, '.json'),
    started: started.toISOString(),
    finished: finished.toISOString(),
    durationS,
    verdict: escapeControls(redact(v), true),
    ...p.details?.(outcome)
  }
  if (ctx.log.fileError) result.logFile = undefined
  // the report file first (it clears reportFile when it cannot be written), then the platform's subscribers
  await events.emit({ type: 'run-finished', result })
  return result
}

/**
 * One command per host to finish: the history line, this run's log, and (on the primary, last) the lock.
 * With a fresh signal: an interrupted run (SIGINT, SIGTERM) must still record itself and release its lock.
 */
async function finishOnHosts(
  ctx: RunContext,
  entry: HistoryEntry | undefined,
  where: 'every-host' | 'primary'
): Promise<void> {
  const lock = ctx.lock
  if (!lock) return
  // the lock host: the primary, or (when the selection left it out) the config's primary, for the lock alone
  const primary = lockSessionOf(ctx)
  const text = ctx.log.lines.join('\n')
  const finish = { ...ctx, signal: freshSignal() }
  const hosts: HostSession[] = where === 'primary' ? [primaryOf(ctx)] : ctx.sessions
  const all = hosts.includes(primary) ? hosts : [...hosts, primary]
  const results = await Promise.allSettled(
    all.map(s => {
      const parts = [
        ...(s.prune?.length ? [pruneReleases(s.layout, s.prune)] : []),
        ...(entry && hosts.includes(s) ? [appendHistory(s.layout, entry)] : []),
        ...(hosts.includes(s) ? [appendHostLog(s.layout, text)] : []),
        ...(s === primary ? [releaseLock(s.layout, lock.token)] : [])
      ]
      return runOn(finish, s, combine('record history and log; release the lock', parts), { stage: 'finish' })
    })
  )
  results.forEach((r, i) => {
    const s = all[i] as HostSession
    if (!s.prune?.length) return
    const kv = r.status === 'fulfilled' ? parseKeyValues(r.value.stdout) : undefined
    const pruned = kv?.get('PRUNED') ?? []
    if (pruned.length)
      ctx.log.info(`pruned ${pruned.length} old release(s): ${pruned.join(', ')}`, s.host.name)
    const left = s.prune.filter(id => !pruned.includes(id))
    if (left.length) ctx.log.warn(`could not prune old releases: ${left.join(', ')}`, s.host.name)
  })
  const mine = results[all.indexOf(primary)]
  const state = mine?.status === 'fulfilled' ? parseKeyValues(mine.value.stdout).get('STATE')?.[0] : undefined
  if (state === 'released') {
    ctx.log.info('lock released', primary.host.name)
    ctx.onLock?.(undefined)
  } else if (state === 'not-ours') {
    ctx.log.warn('the lock is held by another run now; left as it is', primary.host.name)
    ctx.onLock?.(undefined)
  } else {
    const why = mine?.status === 'rejected' ? errorMessage(mine.reason) : `lock state ${state ?? 'unknown'}`
    ctx.log.warn(`could not release the lock (${why}); run \`safe-deploy lock release\``, primary.host.name)
  }
}
