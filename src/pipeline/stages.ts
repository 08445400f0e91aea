import { existsSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { acquireLockThen, type LockOwner } from '../commands/lock.js'
import { script, type RemoteCommand } from '../commands/command.js'
import {
  inRelease,
  inspectHost,
  linkShared,
  markComplete,
  parseKeyValues,
  readHistory,
  readHistoryLines,
  stillThere
} from '../commands/release.js'
import { sh } from '../commands/quote.js'
import { parseHistory, releasesToPrune, unfinishedReleases } from '../release/history.js'
import {
  connectAll,
  lockSessionOf,
  onEveryHost,
  runOn,
  type HostSession,
  type RunContext
} from '../host/context.js'
import { StageError, errorMessage } from '../core/errors.js'
import { hookEnv } from '../host/env.js'
import { removeReleaseDirs, runNamedHook, runWarningHook } from '../host/hook.js'
import {
  failedChecks,
  hasChecks,
  httpChecks,
  scanLogs,
  sleep,
  stoppedAnswering,
  verifyHost
} from './checks.js'
import type { ProductStage } from './stage.js'
import { inspectFindings, type Finding } from './findings.js'
import { forHost } from './roles.js'
import type { SwitchStrategy } from './switch.js'
import { uploadFor, type UploadStrategy } from './upload/index.js'
import { probeBase } from './upload/incremental.js'
import { runOnRunner } from './buildlocal.js'
import { reuseBuild } from './reuse.js'

function describeOwner(json: string | undefined): string {
  if (!json) return 'an unknown owner (owner.json is missing)'
  try {
    const o = JSON.parse(json) as Partial<LockOwner>
    return `${o.who ?? 'unknown'}${o.run ? ` (${o.run})` : ''} running \`${o.command ?? '?'}\` from ${o.runner ?? '?'} since ${o.started ?? '?'}, expires ${o.expires ?? '?'}`
  } catch {
    return `an owner whose owner.json cannot be read: ${json.slice(0, 200)}`
  }
}

/** Connect, lock, and check every host. Changes nothing a user can see. */
export function preflightStage(opts: {
  command: string
  deploying: boolean
  inspected?: (ctx: RunContext) => void
  /** Read the lock host's history in the lock's script (a rollback's `choose` needs it): `s.history`. */
  history?: boolean
}): ProductStage {
  const needs = opts.deploying ? ['tar'] : []
  const inspect = (ctx: RunContext, s: HostSession): RemoteCommand => {
    const it = inspectHost(s.layout, opts.deploying ? ctx.config.shared.files : [], [
      ...needs,
      'curl',
      'wget'
    ])
    if (!opts.deploying || ctx.config.upload.strategy !== 'incremental') return it
    // the incremental upload's check of its base release, in the same script (s.baseProbe)
    const probe = probeBase(s.layout)
    return { ...it, parts: [it.label, probe.label], script: script(it.script, probe.script, 'true') }
  }
  // the inspection output of the lock host, read in the lock's own script (one round trip fewer)
  const read = new Map<HostSession, string>()
  return {
    name: 'preflight',
    scope: 'each-host',
    effect: 'none',
    async begin(ctx) {
      if (opts.deploying && !existsSync(ctx.loaded.sourceDir)) {
        if (ctx.dryRun)
          ctx.dryRun.runner(
            `source.dir ${ctx.loaded.sourceDir} does not exist on this machine: a deploy from here stops`
          )
        else
          throw new StageError('preflight', `source.dir ${ctx.loaded.sourceDir} does not exist on the runner`)
      }
      await connectAll(ctx)
      const lockHost = lockSessionOf(ctx)
      // the lock host is inspected in the lock's script when it is one of the run's hosts
      const then = ctx.sessions.includes(lockHost)
        ? [inspect(ctx, lockHost), ...(opts.history ? [readHistoryLines(lockHost.layout)] : [])]
        : []
      const out = await takeLock(ctx, opts.command, then)
      if (then.length) {
        read.set(lockHost, out)
        if (opts.history)
          lockHost.history = (parseKeyValues(out).get('HISTORY') ?? []).map(l => `${l}\n`).join('')
      }
    },
    async run(ctx, s) {
      const fromHost = httpChecks(forHost(ctx, s)).some(c => c.from === 'host')
      {
        const out = read.get(s) ?? (await runOn(ctx, s, inspect(ctx, s), { stage: 'preflight' })).stdout
        if (opts.deploying && ctx.config.upload.strategy === 'incremental') s.baseProbe = out
        const kv = parseKeyValues(out)
        // the same findings `doctor` lists (src/pipeline/findings.ts): an error stops the run
        const findings = inspectFindings(s, { kv, needs, fromHost, deploying: opts.deploying })
        const stop = (f: Finding | undefined) => {
          if (f) throw new StageError('preflight', f.message, s.host.name)
        }
        stop(findings.find(f => f.level === 'error' && f.check !== 'disk'))
        const current = kv.get('CURRENT')?.[0]?.replace(/^releases\//, '')
        s.current = current || undefined
        s.releases = (kv.get('RELEASE') ?? []).sort()
        s.complete = kv.get('COMPLETE') ?? []
        if (opts.deploying) await removeUnfinished(ctx, s)
        stop(findings.find(f => f.level === 'error'))
        for (const f of findings) if (f.level === 'warning') ctx.log.warn(f.message, s.host.name)
        ctx.log.info(
          `current release: ${s.current ?? '(none)'}; ${s.releases.length} release(s) on disk`,
          s.host.name
        )
      }
    },
    async end(ctx, ok) {
      read.clear()
      if (ok) opts.inspected?.(ctx)
    }
  }
}

/**
 * Removes releases a killed deploy left half-made (no completion marker, not current, never served per this
 * host's history), so that nothing can switch to them. Runs under the lock, before the new upload.
 */
async function removeUnfinished(ctx: RunContext, s: HostSession): Promise<void> {
  const unmarked = s.releases.filter(r => r !== s.current && !s.complete?.includes(r))
  if (!unmarked.length) return
  const text = s.history ?? (await runOn(ctx, s, readHistory(s.layout), { stage: 'preflight' })).stdout
  const history = parseHistory(text)
  const unfinished = unfinishedReleases(s.releases, s.complete ?? [], s.current, history)
  if (!unfinished.length) return
  await removeReleaseDirs(ctx, s, unfinished, 'preflight')
  s.releases = s.releases.filter(r => !unfinished.includes(r))
  ctx.log.warn(
    `removed ${unfinished.length} unfinished release(s) left by an interrupted deploy (its build never completed): ${unfinished.join(', ')}`,
    s.host.name
  )
}

/** How often `--wait-lock` looks at a held lock again. */
const LOCK_POLL_MS = 2000

/**
 * Takes the global lock on the lock host; `then` runs in the same script once the lock is ours. Returns that
 * script's output (the lock's lines and what `then` printed).
 */
async function takeLock(ctx: RunContext, command: string, then: RemoteCommand[] = []): Promise<string> {
  // the lock is global: on the config's primary, also when the selection left it out
  const primary = lockSessionOf(ctx)
  const owner = {
    who: ctx.actor.who,
    run: ctx.actor.run,
    pid: process.pid,
    runner: hostname(),
    command,
    token: randomBytes(12).toString('hex')
  }
  const ttl = Math.ceil(ctx.config.lock.ttl / 1000)
  const t0 = Date.now()
  const wait = ctx.waitLockMs ?? 0
  let waited: string | undefined
  let r, kv, state, holder
  for (;;) {
    r = await runOn(ctx, primary, acquireLockThen(primary.layout, owner, ttl, then), { stage: 'preflight' })
    kv = parseKeyValues(r.stdout)
    state = kv.get('STATE')?.[0]
    holder = kv.get('OWNER')?.[0]
    if (state !== 'held' || Date.now() - t0 >= wait || ctx.signal.aborted) break
    // --wait-lock: another run holds it; look again every few seconds until it is free or the wait is over
    if (waited !== holder) {
      ctx.log.info(
        `waiting up to ${Math.round(wait / 1000)} s for the lock held by ${describeOwner(holder)}`,
        primary.host.name
      )
      waited = holder
    }
    await sleep(Math.min(LOCK_POLL_MS, Math.max(0, wait - (Date.now() - t0))), ctx.signal).catch(
      () => undefined
    )
  }
  if (state === 'held') {
    const after = wait ? ` (waited ${Math.round((Date.now() - t0) / 1000)} s with --wait-lock)` : ''
    throw new StageError(
      'preflight',
      `another deploy holds the lock on ${primary.host.name}: ${describeOwner(holder)}${after}. Wait for it to finish; if that run is dead, run \`safe-deploy lock release\``,
      primary.host.name
    )
  }
  if (waited)
    ctx.log.info(`the lock is free after ${Math.round((Date.now() - t0) / 1000)} s`, primary.host.name)
  if (state !== 'acquired' && state !== 'taken-over') {
    throw new StageError(
      'preflight',
      `could not take the lock on ${primary.host.name}: ${r.stdout.trim() || r.stderr.trim()}`,
      primary.host.name
    )
  }
  if (state === 'taken-over')
    ctx.log.warn(`took over an expired lock held by ${describeOwner(holder)}`, primary.host.name)
  ctx.lock = owner
  ctx.onLock?.(owner.token)
  ctx.log.info(`lock taken (${primary.layout.lock}, expires in ${ttl} s)`, primary.host.name)
  return r.stdout
}

/** The user's test command, on the runner, before anything touches a server. */
export function testStage(): ProductStage {
  return {
    name: 'test',
    scope: 'runner',
    effect: 'none',
    async run(ctx) {
      const command = ctx.config.stages.test
      if (!command) {
        ctx.log.info('no stages.test configured; skipped')
        return
      }
      if (ctx.dryRun) {
        ctx.dryRun.runner(
          'test (in source.dir; a failure stops the deploy)',
          `cd ${sh(ctx.loaded.sourceDir)} && ${command}`
        )
        return
      }
      await runOnRunner(ctx, 'test', 'test command', command, ctx.loaded.sourceDir)
    }
  }
}

/**
 * Upload, link shared, build: a new release dir on every host; nothing live changes. `source` is the dir
 * packed (default source.dir; the staging dir after stages.build_local).
 */
export function deployStage(
  rel: () => string,
  source: (ctx: RunContext) => string = ctx => ctx.loaded.sourceDir
): ProductStage {
  const created = new Set<HostSession>()
  let upload: UploadStrategy | undefined
  return {
    name: 'deploy',
    scope: 'each-host',
    effect: 'disk',
    // a host where the release already existed is not this run's to remove
    needsUndo: s => created.has(s),
    async begin(ctx) {
      upload = uploadFor(ctx)
      await upload.prepare(ctx, source(ctx))
    },
    async run(ctx, s) {
      const release = rel()
      if (s.releases.includes(release)) {
        throw new StageError('deploy', `release ${release} already exists on ${s.host.name}`, s.host.name)
      }
      created.add(s)
      if (!upload) throw new Error('deploy stage: run before begin')
      const { files, dirs } = ctx.config.shared
      const build = ctx.config.stages.build
      // the shared links, and without a build the completion marker, run in the upload's own command
      const linking = files.length || dirs.length ? [linkShared(s.layout, release, files, dirs)] : []
      const marker = markComplete(s.layout, release)
      await upload.send(ctx, s, release, build ? linking : [...linking, marker])
      ctx.log.info(`uploaded to ${s.layout.release(release)}`, s.host.name)
      if (linking.length) ctx.log.info(`linked shared: ${[...files, ...dirs].join(', ')}`, s.host.name)
      if (!build) return
      await reuseBuild(ctx, s, release)
      await runOn(ctx, s, inRelease(s.layout, release, 'build', build, hookEnv(ctx, s, release, 'build')), {
        stage: 'deploy'
      })
      // only now is the release complete: a run killed before this line left a half-made release
      await runOn(ctx, s, marker, { stage: 'deploy' })
    },
    async end() {
      upload?.finish()
      upload = undefined
    },
    async undo(ctx, s, { live, liveOn }) {
      const release = rel()
      // kept where it went live; a host of the fleet never switched gets its staged release removed
      if (liveOn ? liveOn(s) : live) {
        ctx.log.info(
          `kept releases/${release} for inspection; it is marked bad in history and later rollbacks skip it`,
          s.host.name
        )
        return
      }
      await removeReleaseDirs(ctx, s, [release], 'rollback')
      ctx.log.info(
        live
          ? `removed the staged release ${release} (never switched here)`
          : `removed the unfinished release ${release}`,
        s.host.name
      )
    }
  }
}

/** Runs the checks once against the release that serves again after a rollback (the policy says when). */
export async function verifyRestored(ctx: RunContext, hosts: HostSession[], stage: string): Promise<void> {
  const back = hosts.filter(s => s.current && hasChecks(ctx, s))
  if (!back.length) return
  await Promise.all(back.map(s => verifyHost(ctx, s, s.current as string, stage)))
  ctx.log.info(`previous release verified healthy on ${back.map(s => s.host.name).join(', ')}`)
}

/**
 * A fleet, before the first host switches: every staged host must still answer over its connection (one
 * cheap command each), else no host switches. One host has nothing to compare with: its switch tells.
 */
export async function allStillAnswer(ctx: RunContext): Promise<void> {
  if (ctx.sessions.length < 2 || ctx.dryRun) return
  await onEveryHost(ctx, s => runOn(ctx, s, stillThere(), { stage: 'switch', timeoutMs: 30_000 }))
}

/**
 * The switch (see src/pipeline/switch.ts for the strategies), per host. Undo puts back the release that
 * served before on that host (`s.current`: the previous release of a deploy, the release a manual rollback
 * left) and restarts it; the policy then has it verified once (`recheck`).
 * Hooks: hooks.before_switch runs inside the release about to go live just before each host switches (its
 * failure fails the switch there, before it switches); hooks.after_rollback inside the release put back, after
 * the undo restored it and, for a manual rollback (`kind`), after the switch to its target (a warning).
 */
export function switchStage(
  rel: () => string,
  strategy: () => SwitchStrategy,
  kind: 'deploy' | 'rollback' = 'deploy'
): ProductStage {
  const afterRollback = (ctx: RunContext, s: HostSession, to: string, from: string, stage: string) =>
    runWarningHook(ctx, s, 'after_rollback', to, stage, `releases/${to} serves again`, {
      SAFE_DEPLOY_ROLLED_BACK_TO: to,
      SAFE_DEPLOY_ROLLED_BACK_FROM: from
    })
  return {
    name: 'switch',
    scope: 'each-host',
    effect: 'live',
    changedLive: s => strategy().wentLive(s),
    async run(ctx, s) {
      const release = rel()
      // before this host switches: a failure leaves it serving what it served
      await runNamedHook(ctx, s, 'before_switch', release, 'switch')
      s.switched = `this run was switching it to releases/${release}`
      await strategy().activate(ctx, s, release, 'switch')
      s.switched = `this run switched it to releases/${release}`
      if (kind === 'rollback') await afterRollback(ctx, s, release, s.current ?? '', 'switch')
    },
    async undo(ctx, s) {
      const release = rel()
      const back = s.current ? `releases/${s.current}` : 'no release'
      s.switched = `this run switched it to releases/${release}, then was switching it back to ${back}`
      const restoring = strategy().wentLive(s)
      await strategy().restore(ctx, s, release, 'rollback')
      s.switched = `this run switched it to releases/${release}, then back to ${back}`
      if (restoring && s.current) await afterRollback(ctx, s, s.current, release, 'rollback')
    },
    recheck: (ctx, hosts) => verifyRestored(ctx, hosts, 'rollback')
  }
}

/**
 * Health checks against the new release, per host: the checks, then (verify.window) a wait and the checks
 * again, then the log scan. A failure makes the orchestrator roll back. After they passed on a host (or with
 * no checks), hooks.after_verify runs inside the release there unless `afterVerify` is false (a manual
 * rollback: its target gets hooks.after_rollback); its failure is a warning.
 */
export function verifyStage(rel: () => string, opts = { afterVerify: true }): ProductStage {
  let checks = false
  return {
    name: 'verify',
    scope: 'each-host',
    effect: 'none',
    async begin(ctx) {
      checks = hasChecks(ctx)
      if (!checks)
        ctx.log.warn(
          'no verify checks configured (verify.http / verify.command): a broken release cannot be detected or rolled back automatically'
        )
    },
    async run(ctx, s) {
      const release = rel()
      if (checks && hasChecks(ctx, s)) await check(ctx, s, release)
      if (opts.afterVerify)
        await runWarningHook(
          ctx,
          s,
          'after_verify',
          release,
          'verify',
          `releases/${release} passed its checks and stays`
        )
    }
  }
  async function check(ctx: RunContext, s: HostSession, release: string) {
    try {
      await verifyHost(ctx, s, release, 'verify')
    } catch (e) {
      if (ctx.signal.aborted || ctx.dryRun) throw e
      throw await failedChecks(ctx, s, release, 'verify', e)
    }
    const window = forHost(ctx, s).config.verify.window
    if (window > 0) {
      ctx.log.info(`checks passed; watching for ${window / 1000} s before checking again`, s.host.name)
      if (ctx.dryRun)
        ctx.dryRun.runner(
          `wait ${window / 1000} s (verify.window), then check once more`,
          undefined,
          s.host.name
        )
      else await sleep(window, ctx.signal)
      try {
        await verifyHost(ctx, s, release, 'verify', 1)
      } catch (e) {
        if (ctx.signal.aborted) throw e
        throw await stoppedAnswering(ctx, s, release, 'verify', window, e)
      }
    }
    await scanLogs(ctx, s, release, 'verify')
  }
}

/** Prunes old releases beyond keep_releases, per host; never current nor previous. Failures are warnings. */
export function cleanupStage(
  rel: () => string,
  strategy?: () => SwitchStrategy,
  opts = { prune: true }
): ProductStage {
  return {
    name: 'cleanup',
    scope: 'each-host',
    effect: 'disk',
    async run(ctx, s) {
      const release = rel()
      const retire = strategy?.().retire
      if (retire) {
        await retire(ctx, s, release).catch(e =>
          ctx.log.warn(`could not retire the previous release: ${errorMessage(e)}`, s.host.name)
        )
      }
      if (!opts.prune) return
      const all = [...new Set([...s.releases, release])]
      const prune = releasesToPrune(all, ctx.config.keep_releases, [release, s.current])
      if (!prune.length) return
      // without stages.prune (which runs inside each release first), the run's finish script prunes them:
      // no round trip of their own, and their `rm -rf` is off the run's critical path (pruneReleases)
      if (!ctx.config.stages.prune) {
        s.prune = prune
        ctx.log.info(
          `${prune.length} old release(s) to prune as the run finishes: ${prune.join(', ')}`,
          s.host.name
        )
        return
      }
      try {
        await removeReleaseDirs(ctx, s, prune, 'cleanup')
        ctx.log.info(`pruned ${prune.length} old release(s): ${prune.join(', ')}`, s.host.name)
      } catch (e) {
        ctx.log.warn(`could not prune old releases: ${errorMessage(e)}`, s.host.name)
      }
    }
  }
}
