import { listReleases, parseKeyValues, readHistory } from '../commands/release.js'
import { newReleaseId, type ReleaseId } from '../release/id.js'
import {
  parseHistory,
  releaseStates,
  rerunOf,
  rollbackTarget,
  unfinishedReleases,
  type HistoryEntry,
  type ReleaseState,
  type Rerun
} from '../release/history.js'
import { ConfigError, ExitCode } from '../core/exit.js'
import type { Reporter } from '../report/log.js'
import { closeAll, connectAll, onEveryHost, primaryOf, runOn, type RunContext } from '../host/context.js'
import { StageError } from '../core/errors.js'
import { newContext, runLifecycle, type RunPlan, type RunRequest } from '../engine/lifecycle.js'
import {
  allStillAnswer,
  cleanupStage,
  deployStage,
  preflightStage,
  switchStage,
  testStage,
  verifyStage
} from '../pipeline/stages.js'
import type { Stage } from '../pipeline/stage.js'
import { strategyFor, type SwitchStrategy } from '../pipeline/switch.js'
import type { RunResult } from '../pipeline/result.js'
import { rolloutBatches } from '../pipeline/rollout.js'
import { forHost } from '../pipeline/roles.js'
import { hasChecks, httpChecks } from '../pipeline/checks.js'
import { gitClean, gitCommit } from '../pipeline/git.js'
import { deployBackup } from '../pipeline/backup.js'
import { buildLocal } from '../pipeline/buildlocal.js'
import {
  migrateStage,
  parseRevision,
  planRollbackDatabase,
  rollbackDatabaseStage,
  type MigrationState,
  type RollbackDatabaseOptions
} from '../pipeline/migrate.js'
import { hookEnv } from '../host/env.js'
import { backupsOn } from '../config/rules.js'
import { inRelease } from '../commands/release.js'
import type { HostSession } from '../host/context.js'
import { notifications } from '../notify/index.js'

/** switch and verify run batch by batch (rollout:), one batch of every host without it. */
const rolloutOf = (ctx: RunContext) => ({
  stages: ['switch', 'verify'],
  batches: rolloutBatches(ctx.loaded.hosts, ctx.config.rollout),
  waitMs: ctx.config.rollout?.wait ?? 0,
  ready: allStillAnswer
})

/**
 * A deploy or rollback through the one run lifecycle (src/engine/lifecycle.ts), saving its progress, telling
 * the team (`notify:`, src/notify/).
 */
const execute = (req: RunRequest, command: 'deploy' | 'rollback', plan: (ctx: RunContext) => RunPlan) =>
  runLifecycle(req, {
    command,
    intro: introOf(command),
    progress: true,
    plan,
    subscribers: ctx => notifications(ctx, command)
  })

/** `deploy of shop to web-1, web-2 (/srv/shop) by octocat`: the first line of a deploy's or rollback's log. */
const introOf = (command: 'deploy' | 'rollback') => (ctx: RunContext) =>
  `${command} of ${ctx.config.app} to ${ctx.loaded.hosts.map(h => h.name).join(', ')} (${ctx.config.path}) by ${ctx.actor.who}`

/**
 * test → deploy → switch → verify → cleanup, with automatic rollback when verify fails. A deploy of a commit
 * that history has as an older release (a CI re-run of an old job) rolls back to that release instead
 * (`rerunOfDeploy`), or is refused when that release is bad or gone; `redeploy` builds it anew.
 */
export async function deploy(req: RunRequest): Promise<RunResult> {
  const rerun = await rerunOfDeploy(req)
  if (rerun) return rollback({ ...req, to: rerun.release, notice: rerun.notice })
  return execute(req, 'deploy', ctx => deployStages(ctx, req))
}

const quiet: Reporter = { info() {}, warn() {}, error() {}, startGroup() {}, endGroup() {} }

/**
 * When the commit being deployed is known (the CI's, or a clean git checkout's) and `redeploy` is off: reads history and the releases on the
 * primary (one read-only connection, no lock) and says whether this deploy is a re-run of an older release's
 * deploy. Throws a ConfigError (exit 2) when that release is bad or gone. A host that cannot be read says
 * nothing: the deploy then runs and its preflight reports the host.
 */
async function rerunOfDeploy(req: RunRequest): Promise<{ release: ReleaseId; notice: string } | undefined> {
  if (req.redeploy || req.loaded.config.redeploy) return undefined
  // the CI's commit, or a clean checkout's: a tree with local changes is not that commit's code
  const dir = req.loaded.sourceDir
  const commit = req.actor?.commit ?? (gitClean(dir) ? gitCommit(dir) : undefined)
  const primary = req.loaded.hosts.find(h => h.primary) ?? req.loaded.hosts[0]
  if (!commit || !primary) return undefined
  const ctx = newContext(
    { ...req, reporter: quiet, loaded: { ...req.loaded, hosts: [primary], lockHost: undefined } },
    'deploy',
    new Date(),
    false
  )
  let found: Rerun
  try {
    await connectAll(ctx)
    const s = primaryOf(ctx)
    const history = parseHistory((await runOn(ctx, s, readHistory(s.layout), { stage: 'preflight' })).stdout)
    if (!history.length) return undefined
    const kv = parseKeyValues((await runOn(ctx, s, listReleases(s.layout), { stage: 'preflight' })).stdout)
    const current = kv.get('CURRENT')?.[0]?.replace(/^releases\//, '') || undefined
    found = rerunOf(commit, history, kv.get('RELEASE') ?? [], current)
  } catch {
    return undefined
  } finally {
    await closeAll(ctx)
  }
  const short = commit.slice(0, 7)
  if (found.kind === 'rollback')
    return {
      release: found.release,
      notice: `commit ${short} is release ${found.release}, deployed before; rolling back to it instead of deploying it again (redeploy: true to build it anew)`
    }
  if (found.kind === 'refuse')
    throw new ConfigError(
      found.why === 'bad'
        ? `commit ${short} is release ${found.release}, deployed before and marked bad since (it failed its checks, or a rollback left it); refusing to deploy it again: roll back to it anyway with \`safe-deploy rollback --to ${found.release}\`, or build it anew with redeploy: true (--redeploy)`
        : `commit ${short} was release ${found.release}, deployed before and since removed from the hosts (pruned); refusing to deploy that old code over a newer database: build it anew with redeploy: true (--redeploy), or roll back to a release that exists with \`safe-deploy rollback --to\` (see \`safe-deploy releases\`)`
    )
  return undefined
}

/** A deploy's stages and what it records: one list for `deploy` and for `plan` (src/flows/plan.ts). */
export function deployStages(ctx: RunContext, req: RunRequest): RunPlan {
  {
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
    const local = buildLocal(req.buildCache)
    return {
      stages: [
        preflightStage({ command: 'deploy', deploying: true, inspected: unique }),
        testStage(),
        // only when configured: a deploy without it has the stages it always had
        ...(ctx.config.stages.build_local ? [local.stage] : []),
        ...backup.stages,
        deployStage(rel, local.dir),
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
      backup: backup.result,
      details: () =>
        migration.revision === undefined && migration.after === undefined
          ? {}
          : { revision: { before: migration.revision, after: migration.after } },
      cleanup: local.cleanup,
      rollout: rolloutOf(ctx)
    }
  }
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
export function rollback(
  req: RunRequest & { to?: ReleaseId; notice?: string } & RollbackDatabaseOptions
): Promise<RunResult> {
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
        // read by preflight in the lock's script when the primary holds the lock
        history = parseHistory(
          primary.history ??
            (await runOn(c, primary, readHistory(primary.layout), { stage: 'choose' })).stdout
        )
        target = chooseTarget(c.sessions, primary, history, req.to)
        if (req.notice) c.log.info(req.notice)
        c.log.info(`rolling back from ${from ?? '(none)'} to ${target}`)
      }
    }
    const rel = () => target as string
    let chosen: SwitchStrategy | undefined
    const strategy = () => (chosen ??= strategyFor(ctx))
    return {
      stages: [
        preflightStage({ command: 'rollback', deploying: false, history: true }),
        choose,
        rollbackDatabaseStage(
          rel,
          () => from,
          () => history,
          req,
          database
        ),
        // undo: the release that served when the rollback started goes back, restarted and verified
        switchStage(rel, strategy, 'rollback'),
        verifyStage(rel, { afterVerify: false }),
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
      rollout: rolloutOf(ctx),
      backup: () =>
        database.safety ? { name: database.safety.name, path: database.safety.path } : undefined,
      // A rollback that failed before anything live changed (refused, no target, its database step undone)
      // says nothing about its target: no history line, which would make that good release look failed to
      // later rollbacks. Its log still goes to deploy.log on every host.
      recorded: o => !o.failure || o.rolledBack || !!o.rollbackFailed
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
      // the host's own switch and restart (its roles')
      const hc = forHost(ctx, s).config
      if (hc.switch.strategy === 'blue-green')
        out.push(
          `${s.host.name}: start releases/${target} on the idle port, check it, point the proxy at it (was ${was})`
        )
      else {
        const hook = hc.switch.strategy === 'graceful' ? hc.switch.reload : hc.stages.restart
        const stop = hc.stages.stop && s.current ? `in releases/${s.current}: ${hc.stages.stop}; then ` : ''
        out.push(
          `${s.host.name}: ${stop}current -> releases/${target} (was ${was})${hook ? `; then in releases/${target}: ${hook}` : ''}`
        )
      }
    }
    out.push('')
    out.push('## verify')
    for (const check of httpChecks(ctx))
      out.push(`GET ${check.url} (expect ${check.expect_status}, from ${check.from})`)
    for (const command of [c.verify.command ?? []].flat()) out.push(`in releases/${target}: ${command}`)
    // hosts whose role has checks of its own
    for (const s of ctx.sessions) {
      const hc = forHost(ctx, s)
      if (hc.config.verify === c.verify) continue
      for (const check of httpChecks(hc))
        out.push(
          `${s.host.name} (its role's check): GET ${check.url} (expect ${check.expect_status}, from ${check.from})`
        )
      for (const command of [hc.config.verify.command ?? []].flat())
        out.push(`${s.host.name} (its role's check): in releases/${target}: ${command}`)
    }
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
/** One release in `releases`: its one state (src/release/history.ts releaseStates) and its deploy. */
export interface ReleaseDetail {
  release: string
  current: boolean
  state: string
  deployedBy?: string
  deployedAt?: string
  port?: number
}

export async function listReleaseState(req: RunRequest) {
  const ctx = newContext(req, 'releases', new Date(), false)
  try {
    // every selected host: one out of reach is listed as such (`error`)
    await connectAll(ctx, { tolerate: true })
    const primary = primaryOf(ctx)
    const history = parseHistory(
      (await runOn(ctx, primary, readHistory(primary.layout), { stage: 'releases' })).stdout
    )
    const states = releaseStates(history)
    const hosts = await onEveryHost(ctx, async s => {
      const kv = parseKeyValues((await runOn(ctx, s, listReleases(s.layout), { stage: 'releases' })).stdout)
      const current = kv.get('CURRENT')?.[0]?.replace(/^releases\//, '') || undefined
      const releases = (kv.get('RELEASE') ?? []).sort()
      return {
        host: s.host.name,
        current,
        releases,
        /** Newest first: each release's one state (src/release/history.ts releaseStates) and its deploy. */
        details: [...releases].reverse().map(release => {
          const entry = history.findLast(e => e.release === release && e.type === 'deploy')
          return {
            release,
            current: release === current,
            state: states.get(release) ?? 'unknown',
            ...(entry ? { deployedBy: entry.actor, deployedAt: entry.finished } : {}),
            ...(typeof entry?.port === 'number' ? { port: entry.port } : {})
          }
        })
      } as {
        host: string
        current?: string
        releases: string[]
        details: ReleaseDetail[]
        error?: string
      }
    })
    const down = (ctx.unreachable ?? []).filter(u => u.host !== ctx.loaded.lockHost)
    hosts.push(...down.map(u => ({ host: u.host.name, releases: [], details: [], error: u.error })))
    const order = ctx.loaded.hosts.map(h => h.name)
    hosts.sort((a, b) => order.indexOf(a.host) - order.indexOf(b.host))
    return { hosts, history }
  } finally {
    await closeAll(ctx)
  }
}

/** One release of `releases`, for the Action's output and summary: newest first. */
export interface ListedRelease {
  release: string
  /** The hosts where it is `current`. */
  current: string[]
  /** The hosts that have it on disk. */
  hosts: string[]
  /** Its one state in history (src/release/history.ts releaseStates): verified, bad, rolled back from... */
  state: ReleaseState
  /** Who deployed it, the commit and when that deploy finished. */
  actor: string | null
  commit: string | null
  deployed: string | null
}

/** `releases` as data: every release on any host, newest first, with what history says of it. */
export async function releaseList(req: RunRequest): Promise<ListedRelease[]> {
  const state = await listReleaseState(req)
  const states = releaseStates(state.history)
  const all = [...new Set(state.hosts.flatMap(h => h.releases))].sort().reverse()
  return all.map(release => {
    const entry = state.history.findLast(e => e.release === release && e.type === 'deploy')
    return {
      release,
      current: state.hosts.filter(h => h.current === release).map(h => h.host),
      hosts: state.hosts.filter(h => h.releases.includes(release)).map(h => h.host),
      state: states.get(release) ?? 'unknown',
      actor: entry?.actor ?? null,
      commit: entry?.commit ?? null,
      deployed: entry?.finished ?? null
    }
  })
}

export { newContext, type RunRequest }
