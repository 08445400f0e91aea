import { writeFileSync, mkdirSync } from 'node:fs'
import { resolve, join } from 'node:path'
import type { LoadedConfig } from '../config/load.js'
import {
  appendHistory,
  appendHostLog,
  listReleases,
  parseKeyValues,
  readHistory
} from '../commands/release.js'
import { releaseLock } from '../commands/lock.js'
import { combine } from '../commands/command.js'
import { sh } from '../commands/quote.js'
import { DeployLog, escapeControls, runStem, type Reporter } from '../report/log.js'
import { Redactor } from '../report/redact.js'
import { newReleaseId, type ReleaseId } from '../release/id.js'
import { parseHistory, rollbackTarget, unfinishedReleases, type HistoryEntry } from '../release/history.js'
import { ExitCode } from '../config/errors.js'
import {
  closeAll,
  connectAll,
  defaultActor,
  onEveryHost,
  primaryOf,
  runOn,
  type Actor,
  type RunContext
} from './context.js'
import { StageError, errorMessage } from './errors.js'
import { oneLine } from './excerpt.js'
import { runStagesSafely, type Outcome } from './orchestrator.js'
import {
  cleanupStage,
  deployStage,
  preflightStage,
  switchStage,
  testStage,
  verifyRestored,
  verifyStage
} from './stages.js'
import type { Stage } from './stage.js'
import { ProgressTracker, type RunProgress } from './progress.js'
import { strategyFor, type SwitchStrategy } from './switch.js'
import type { HostState, RunResult } from './result.js'
import { hasChecks, verifyHost } from './checks.js'
import { gitCommit } from './git.js'
import { deployBackup } from '../backup/stages.js'
import {
  migrateStage,
  rollbackDatabaseStage,
  type MigrationState,
  type RollbackDatabaseOptions
} from './migrate.js'

export interface RunRequest {
  loaded: LoadedConfig
  reporter: Reporter
  signal?: AbortSignal
  actor?: Actor
  verbose?: boolean
  onLock?: (token: string | undefined) => void
  /** Told the run's progress as it goes (the Action saves it for its post step: src/pipeline/interrupted.ts). */
  onProgress?: (p: RunProgress) => void
  /** Where the log and report go (default: config log_dir, relative to the working directory). */
  logDir?: string
  now?: Date
}

function newContext(req: RunRequest, command: string, started: Date, logFile = true): RunContext {
  const redactor = new Redactor(req.loaded.secrets)
  const logDir = resolve(req.logDir ?? req.loaded.config.log_dir)
  const file = logFile ? join(logDir, `${runStem(command, started)}.log`) : undefined
  return {
    loaded: req.loaded,
    config: req.loaded.config,
    log: new DeployLog(file, req.reporter, redactor),
    signal: req.signal ?? new AbortController().signal,
    actor: req.actor ?? defaultActor(),
    sessions: [],
    verbose: !!req.verbose,
    startedAt: started
  }
}

const WORD = { deploy: 'DEPLOYMENT', rollback: 'ROLLBACK' } as const

function verdict(command: 'deploy' | 'rollback', outcome: Outcome, seconds: number): string {
  const word = WORD[command]
  const t = `(${seconds.toFixed(1)} s)`
  if (!outcome.failure) return `${word} SUCCESS ${t}`
  const where = `${word} FAILED at ${outcome.failure.stage}${outcome.failure.host ? ` on ${outcome.failure.host}` : ''}: ${oneLine(outcome.failure.message)}`
  if (outcome.rollbackFailed) return `${where}. ROLLBACK FAILED: ${oneLine(outcome.rollbackFailed)} ${t}`
  if (outcome.rolledBack) return `${where}. ROLLED BACK ${t}`
  return `${where}. Nothing live was changed ${t}`
}

/**
 * What each host looks like after a rollback failed (exit 5), for the log and `hostStates`: where `current`
 * points and what that release is to this run, and whether it passes the checks (one attempt); for a host out
 * of reach, what it served before the run and what the run last did to it. Best effort, with a fresh signal.
 */
async function describeHosts(ctx: RunContext, release: string | undefined): Promise<HostState[]> {
  const c: RunContext = { ...ctx, signal: new AbortController().signal }
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
      if (!hasChecks(c)) return { host, current, reachable: true, note: `${what}; no checks configured` }
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

/** Runs a pipeline and does the bookkeeping every run needs: history, lock, log, report, verdict. */
async function execute(
  req: RunRequest,
  command: 'deploy' | 'rollback',
  plan: (ctx: RunContext) => {
    stages: Stage[]
    release: () => string | undefined
    previous: () => string | undefined
    history: (o: Outcome) => Partial<HistoryEntry>
    /** After a rollback of live state: check that what serves again is healthy. */
    afterRollback?: (ctx: RunContext) => Promise<void>
    /** The backup this run took (deploy): in history, the result and the Action outputs. */
    backup?: () => { name: string; path: string } | undefined
  }
): Promise<RunResult> {
  const started = req.now ?? new Date()
  const t0 = performance.now()
  const ctx = newContext(req, command, started)
  ctx.onLock = req.onLock
  ctx.log.setStage('start')
  ctx.log.info(
    `safe-deploy ${command} of ${ctx.config.app} to ${req.loaded.hosts.map(h => h.name).join(', ')} (${ctx.config.path}) by ${ctx.actor.who}`
  )
  const p = plan(ctx)
  const progress = req.onProgress
    ? new ProgressTracker(ctx, command, started, req.onProgress, {
        release: p.release,
        backup: () => p.backup?.()?.name
      })
    : undefined
  ctx.progress = progress
  const stages = progress ? progress.track(p.stages) : p.stages
  const outcome: Outcome = await runStagesSafely(ctx, stages, { afterRollback: p.afterRollback })
  const finished = new Date()
  const durationS = Math.round((performance.now() - t0) / 100) / 10
  const status: RunResult['status'] = !outcome.failure
    ? 'success'
    : outcome.rolledBack
      ? 'rolled-back'
      : 'failed'
  ctx.log.setStage('finish')

  let hostStates: RunResult['hostStates']
  if (outcome.rollbackFailed) {
    hostStates = await describeHosts(ctx, p.release())
    for (const h of hostStates) ctx.log.error(`state: ${h.note}`, h.host)
  }

  const release = p.release()
  const entry: HistoryEntry | undefined =
    release && ctx.lock
      ? {
          type: command,
          release,
          previous: p.previous() ?? null,
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
          error: outcome.failure
            ? `${outcome.failure.stage}: ${ctx.log.redactor.redact(outcome.failure.message)}`
            : null,
          ...p.history(outcome)
        }
      : undefined

  const v = verdict(command, outcome, durationS)
  ctx.log.write(v, { level: outcome.failure ? 'error' : 'info' })

  // One command per host to finish: history line, this run's log, and (on the primary, last) the lock.
  if (ctx.lock && ctx.sessions.length) {
    const lock = ctx.lock
    const primary = primaryOf(ctx)
    const text = ctx.log.lines.join('\n')
    const results = await Promise.allSettled(
      ctx.sessions.map(s => {
        const parts = [
          ...(entry ? [appendHistory(s.layout, entry)] : []),
          appendHostLog(s.layout, text),
          ...(s === primary ? [releaseLock(s.layout, lock.token)] : [])
        ]
        // a fresh signal: an interrupted run (SIGINT, SIGTERM) must still record itself and release its lock
        const finish = { ...ctx, signal: new AbortController().signal }
        return runOn(finish, s, combine('record history and log; release the lock', parts), {
          stage: 'finish'
        })
      })
    )
    const mine = results[ctx.sessions.indexOf(primary)]
    const state =
      mine?.status === 'fulfilled' ? parseKeyValues(mine.value.stdout).get('STATE')?.[0] : undefined
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
  progress?.finish()
  await closeAll(ctx)

  const result: RunResult = {
    command,
    status,
    exitCode: outcome.exitCode,
    release,
    previousRelease: p.previous(),
    backupName: p.backup?.()?.name,
    backupPath: p.backup?.()?.path,
    rolledBack: outcome.rolledBack,
    error: outcome.failure
      ? { ...outcome.failure, message: ctx.log.redactor.redact(outcome.failure.message) }
      : undefined,
    hostStates,
    stages: outcome.records,
    hosts: req.loaded.hosts.map(h => h.name),
    logFile: ctx.log.file,
    reportFile: ctx.log.file?.replace(/\.log$/, '.json'),
    started: started.toISOString(),
    finished: finished.toISOString(),
    durationS,
    verdict: escapeControls(ctx.log.redactor.redact(v), true)
  }
  if (ctx.log.fileError) result.logFile = undefined
  if (result.reportFile) {
    try {
      mkdirSync(resolve(result.reportFile, '..'), { recursive: true })
      writeFileSync(result.reportFile, ctx.log.redactor.redact(JSON.stringify(result, null, 2)) + '\n', {
        mode: 0o600
      })
    } catch (e) {
      // a full runner disk: the run is over and was undone as needed; only its report file is missing
      ctx.log.warn(`cannot write the report file ${result.reportFile} (${errorMessage(e)})`)
      result.reportFile = undefined
    }
  }
  return result
}

/** test → deploy → switch → verify → cleanup, with automatic rollback when verify fails. */
export function deploy(req: RunRequest): Promise<RunResult> {
  return execute(req, 'deploy', ctx => {
    ctx.actor.commit ??= gitCommit(req.loaded.sourceDir)
    const started = req.now ?? new Date()
    let release: string = newReleaseId(started, ctx.actor.commit)
    // Two deploys within one second would get one name: the later takes the next free second.
    const unique = (c: RunContext) => {
      for (let bump = 1; c.sessions.some(s => s.releases.includes(release)); bump++) {
        release = newReleaseId(new Date(started.getTime() + bump * 1000), ctx.actor.commit)
      }
    }
    const rel = () => release
    let chosen: SwitchStrategy | undefined
    const strategy = () => (chosen ??= strategyFor(ctx))
    const previous = () => (ctx.sessions.length ? primaryOf(ctx).current : undefined)
    const backup = deployBackup(ctx, rel)
    const migration: MigrationState = { started: false, migrated: false }
    return {
      stages: [
        preflightStage({ command: 'deploy', deploying: true, inspected: unique }),
        testStage(),
        ...backup.stages,
        deployStage(rel),
        migrateStage(rel, () => backup.result()?.name, migration),
        switchStage(rel, strategy),
        verifyStage(rel),
        cleanupStage(rel, strategy)
      ],
      release: () => (ctx.lock ? release : undefined),
      previous,
      history: o => ({
        // failed after going live: rolled back, or the rollback failed and it may still be current
        bad: o.failure && (o.rolledBack || o.rollbackFailed) ? true : undefined,
        backup: backup.result()?.name ?? null,
        revision: migration.revision ?? null,
        migrated: migration.migrated || undefined,
        database: migration.database ?? null,
        port: strategy().port?.(primaryOf(ctx))
      }),
      afterRollback: c => verifyRestored(c, c.sessions, 'rollback'),
      backup: backup.result
    }
  })
}

/** Switches every host back to a previous release (default: the newest good one before current). */
export function rollback(req: RunRequest & { to?: ReleaseId } & RollbackDatabaseOptions): Promise<RunResult> {
  return execute(req, 'rollback', ctx => {
    let target: string | undefined
    let from: string | undefined
    let history: HistoryEntry[] = []
    const database: MigrationState = { started: false, migrated: false }
    const choose: Stage = {
      name: 'choose',
      async run(c) {
        const primary = primaryOf(c)
        from = primary.current
        history = parseHistory(
          (await runOn(c, primary, readHistory(primary.layout), { stage: 'choose' })).stdout
        )
        target = req.to ?? rollbackTarget(primary.releases, primary.current, history)
        if (!target) {
          throw new StageError(
            'choose',
            `no earlier release that history records as verified healthy to roll back to on ${primary.host.name} (current: ${primary.current ?? 'none'}; releases: ${primary.releases.join(', ') || 'none'}); name one with --to`,
            primary.host.name
          )
        }
        if (
          req.to &&
          primary.releases.includes(req.to) &&
          unfinishedReleases([req.to], primary.complete ?? [], primary.current, history).length
        ) {
          throw new StageError(
            'choose',
            `release ${req.to} on ${primary.host.name} was never finished (a deploy was stopped before its build completed); refusing to switch to it`,
            primary.host.name,
            ExitCode.badInput
          )
        }
        if (target === primary.current)
          throw new StageError('choose', `${target} is already the current release`, primary.host.name)
        for (const s of c.sessions) {
          if (!s.releases.includes(target)) {
            throw new StageError(
              'choose',
              `release ${target} does not exist on ${s.host.name} (see \`safe-deploy releases\`)`,
              s.host.name
            )
          }
        }
        c.log.info(`rolling back from ${from ?? '(none)'} to ${target}`)
      }
    }
    const rel = () => target as string
    let chosen: SwitchStrategy | undefined
    const strategy = () => (chosen ??= strategyFor(ctx))
    const { run: switchRun, changedLive } = switchStage(rel, strategy)
    return {
      stages: [
        preflightStage({ command: 'rollback', deploying: false }),
        choose,
        rollbackDatabaseStage(
          rel,
          () => from,
          () => history,
          req,
          database
        ),
        // no undo: a target that fails verify is reported (exit 5), not silently swapped back
        { name: 'switch', run: switchRun, changedLive },
        verifyStage(rel),
        cleanupStage(rel, strategy, { prune: false })
      ],
      release: () => target,
      previous: () => from,
      history: o => ({
        // the target went live and failed (its checks): later rollbacks skip it
        bad: o.failure && changedLive?.() ? true : undefined,
        from: from ?? null,
        database: database.database ?? null,
        port: strategy().port?.(primaryOf(ctx))
      })
    }
  })
}

/** What every host has: releases, which one is current, and what history says of each. */
export async function listReleaseState(req: RunRequest) {
  const ctx = newContext(req, 'releases', new Date(), false)
  try {
    await connectAll(ctx)
    const primary = primaryOf(ctx)
    const history = parseHistory(
      (await runOn(ctx, primary, readHistory(primary.layout), { stage: 'releases' })).stdout
    )
    const hosts = await onEveryHost(ctx, async s => {
      const kv = parseKeyValues((await runOn(ctx, s, listReleases(s.layout), { stage: 'releases' })).stdout)
      return {
        host: s.host.name,
        current: kv.get('CURRENT')?.[0]?.replace(/^releases\//, '') || undefined,
        releases: (kv.get('RELEASE') ?? []).sort()
      }
    })
    return { hosts, history }
  } finally {
    await closeAll(ctx)
  }
}

export { newContext }
