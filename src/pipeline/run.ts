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
import { cleanupStage, deployStage, preflightStage, switchStage, testStage, verifyStage } from './stages.js'
import type { Stage } from './stage.js'
import { ProgressTracker, type RunProgress } from './progress.js'
import { strategyFor, type SwitchStrategy } from './switch.js'
import type { HostState, RunResult } from './result.js'
import { hasChecks, httpChecks, verifyHost } from './checks.js'
import { gitCommit } from './git.js'
import { deployBackup } from '../backup/stages.js'
import {
  migrateStage,
  parseRevision,
  planRollbackDatabase,
  rollbackDatabaseStage,
  type MigrationState,
  type RollbackDatabaseOptions
} from './migrate.js'
import { hookEnv } from './env.js'
import { backupsOn } from '../config/rules.js'
import { inRelease } from '../commands/release.js'
import type { HostSession } from './context.js'

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

function verdict(
  command: 'deploy' | 'rollback',
  outcome: Outcome,
  seconds: number,
  previous: string | undefined
): string {
  const word = WORD[command]
  const t = `(${seconds.toFixed(1)} s)`
  if (!outcome.failure) return `${word} SUCCESS ${t}`
  const where = `${word} FAILED at ${outcome.failure.stage}${outcome.failure.host ? ` on ${outcome.failure.host}` : ''}: ${oneLine(outcome.failure.message)}`
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
  const outcome: Outcome = await runStagesSafely(ctx, stages)
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
  // A rollback that failed before anything live changed (refused, no target, its database step undone) says
  // nothing about its target: no history line, which would make that good release look failed to later
  // rollbacks. Its log still goes to deploy.log on every host.
  const recorded = command === 'deploy' || !outcome.failure || outcome.rolledBack || !!outcome.rollbackFailed
  const entry: HistoryEntry | undefined =
    release && ctx.lock && recorded
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

  const v = verdict(command, outcome, durationS, p.previous())
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
        // false: the migrate command ran and the revision did not move
        migrated: migration.migrated || (migration.noop ? false : undefined),
        database: migration.database ?? null,
        port: strategy().port?.(primaryOf(ctx))
      }),
      // the restored release is verified once, after the switch's undo (src/pipeline/policy.ts)
      backup: backup.result
    }
  })
}

/**
 * The release a rollback goes to (`to`, or the newest good one before current on the primary), checked to
 * exist on every host. Throws a StageError (stage `choose`) when there is none.
 */
function chooseTarget(sessions: HostSession[], primary: HostSession, history: HistoryEntry[], to?: string) {
  const target = to ?? rollbackTarget(primary.releases, primary.current, history)
  if (!target) {
    throw new StageError(
      'choose',
      `no earlier release that history records as verified healthy to roll back to on ${primary.host.name} (current: ${primary.current ?? 'none'}; releases: ${primary.releases.join(', ') || 'none'}); name one with --to`,
      primary.host.name
    )
  }
  if (
    to &&
    primary.releases.includes(to) &&
    unfinishedReleases([to], primary.complete ?? [], primary.current, history).length
  ) {
    throw new StageError(
      'choose',
      `release ${to} on ${primary.host.name} was never finished (a deploy was stopped before its build completed); refusing to switch to it`,
      primary.host.name,
      ExitCode.badInput
    )
  }
  if (target === primary.current)
    throw new StageError('choose', `${target} is already the current release`, primary.host.name)
  for (const s of sessions) {
    if (!s.releases.includes(target)) {
      throw new StageError(
        'choose',
        `release ${target} does not exist on ${s.host.name} (see \`safe-deploy releases\`)`,
        s.host.name
      )
    }
  }
  return target
}

/**
 * Switches every host back to a previous release (default: the newest good one before current). When the
 * target fails its checks, the release that served when the rollback started is put back (exit 4).
 */
export function rollback(req: RunRequest & { to?: ReleaseId } & RollbackDatabaseOptions): Promise<RunResult> {
  return execute(req, 'rollback', ctx => {
    let target: string | undefined
    let from: string | undefined
    let history: HistoryEntry[] = []
    const database: MigrationState = { started: false, migrated: false }
    const choose: Stage = {
      name: 'choose',
      scope: 'primary',
      effect: 'none',
      async run(c) {
        const primary = primaryOf(c)
        from = primary.current
        history = parseHistory(
          (await runOn(c, primary, readHistory(primary.layout), { stage: 'choose' })).stdout
        )
        target = chooseTarget(c.sessions, primary, history, req.to)
        c.log.info(`rolling back from ${from ?? '(none)'} to ${target}`)
      }
    }
    const rel = () => target as string
    let chosen: SwitchStrategy | undefined
    const strategy = () => (chosen ??= strategyFor(ctx))
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
        // undo: the release that served when the rollback started goes back, restarted and verified
        switchStage(rel, strategy),
        verifyStage(rel),
        cleanupStage(rel, strategy, { prune: false })
      ],
      release: () => target,
      previous: () => from,
      history: o => ({
        from: from ?? null,
        // the target failed its checks after going live: later rollbacks skip it
        bad: o.failure && (o.rolledBack || o.rollbackFailed) ? true : undefined,
        backup: database.safety?.name ?? null,
        database: database.database ?? null,
        port: strategy().port?.(primaryOf(ctx))
      }),
      backup: () => (database.safety ? { name: database.safety.name, path: database.safety.path } : undefined)
    }
  })
}

/**
 * `rollback --dry-run` / `plan rollback`: what a rollback would do, read-only. Connects, reads each host's
 * releases and `current`, the history and the database revision; takes no lock and changes nothing.
 */
export async function planRollback(
  req: RunRequest & { to?: ReleaseId } & RollbackDatabaseOptions
): Promise<string> {
  const ctx = newContext(req, 'rollback', new Date(), false)
  const out: string[] = []
  try {
    await connectAll(ctx)
    await onEveryHost(ctx, async s => {
      const kv = parseKeyValues((await runOn(ctx, s, listReleases(s.layout), { stage: 'plan' })).stdout)
      s.current = kv.get('CURRENT')?.[0]?.replace(/^releases\//, '') || undefined
      s.releases = (kv.get('RELEASE') ?? []).sort()
    })
    const primary = primaryOf(ctx)
    const history = parseHistory(
      (await runOn(ctx, primary, readHistory(primary.layout), { stage: 'plan' })).stdout
    )
    const from = primary.current
    const target = chooseTarget(ctx.sessions, primary, history, req.to)
    const c = ctx.config
    out.push(`# rollback plan for ${c.app} (read-only: no lock was taken and nothing was changed)`)
    out.push(`rollback from ${from ?? '(none)'} to ${target}`, '')

    out.push(`## database (on ${primary.host.name})`)
    const m = c.stages.migrate
    if (m?.revision && from) {
      const cmd = inRelease(
        primary.layout,
        from,
        'migration revision',
        m.revision,
        hookEnv(ctx, primary, from, 'plan')
      )
      const r = await runOn(ctx, primary, cmd, { stage: 'plan', allowFail: true })
      out.push(
        r.code === 0
          ? `database revision now: ${parseRevision(r.stdout) || '(none)'} (\`${m.revision}\`)`
          : `database revision now: unknown (\`${m.revision}\` failed, exit ${r.code})`
      )
    }
    const db = planRollbackDatabase(c, history, target, from, req)
    if (db.kind === 'nothing') out.push(db.message)
    else if (db.kind === 'refused')
      out.push(`the rollback would stop here, before changing anything: ${db.message}`)
    else if (db.kind === 'restore')
      out.push(
        `1. verify backup ${db.backup}, take a safety backup of the current state`,
        `2. restore ${db.backup} (databases only): every write since it was taken is lost`
      )
    else {
      out.push(`${db.migrated.join(', ')} migrated the database since ${target}`)
      if (backupsOn(c)) out.push('1. take a verified safety backup of what backup: covers')
      else if (req.yes) out.push('1. no safety backup: no backup: is configured (--yes given)')
      else
        out.push(
          `the rollback would stop here, before changing anything: no backup: is configured for a safety backup; pass --yes to run the down command anyway, or --no-db`
        )
      out.push(`2. in releases/${db.release}: ${db.command}`)
      if (m?.revision)
        out.push(`3. read the revision back (\`${m.revision}\`): it must be ${db.revision || '(none)'}`)
    }
    out.push('')

    out.push(`## switch (${c.switch.strategy})`)
    for (const s of ctx.sessions) {
      const was = s.current ? `releases/${s.current}` : 'no release'
      if (c.switch.strategy === 'blue-green')
        out.push(
          `${s.host.name}: start releases/${target} on the idle port, check it, point the proxy at it (was ${was})`
        )
      else {
        const hook = c.switch.strategy === 'graceful' ? c.switch.reload : c.stages.restart
        out.push(
          `${s.host.name}: current -> releases/${target} (was ${was})${hook ? `; then in releases/${target}: ${hook}` : ''}`
        )
      }
    }
    out.push('')
    out.push('## verify')
    for (const check of httpChecks(ctx))
      out.push(`GET ${check.url} (expect ${check.expect_status}, from ${check.from})`)
    for (const command of [c.verify.command ?? []].flat()) out.push(`in releases/${target}: ${command}`)
    if (!hasChecks(ctx)) out.push('no checks configured: a broken target cannot be detected')
    out.push(
      `on failure: the database back as it was (when it changed), current -> releases/${from ?? '(none)'} again, restarted and verified; exit 4`
    )
    return ctx.log.redactor.redact(out.join('\n'))
  } finally {
    await closeAll(ctx)
  }
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
