import { lockStatus, releaseLock } from '../commands/lock.js'
import {
  diskStatus,
  inRelease,
  inspectHost,
  linkShared,
  markComplete,
  parseKeyValues,
  removeReleases,
  switchCurrent,
  unpackCommand
} from '../commands/release.js'
import { acquireLock } from '../commands/lock.js'
import { httpProbe } from '../commands/health.js'
import { REMOTE_SHELL, withEnv, type RemoteCommand } from '../commands/command.js'
import { newReleaseId } from '../release/id.js'
import { Layout } from '../commands/layout.js'
import { closeAll, connectAll, primaryOf, runOn, type RunContext } from './context.js'
import { httpChecks, verifyHost } from './checks.js'
import { errorMessage } from './errors.js'
import { planBlueGreen } from './bluegreen.js'
import type { LockOwner } from '../commands/lock.js'
import { backupPlanCommands } from '../backup/ops/take.js'
import { databaseSizes, type DatabaseSize } from '../backup/ops/probe.js'

export interface LockInfo {
  host: string
  state: 'free' | 'held' | 'expired'
  owner?: Partial<LockOwner>
}

function parseOwner(json: string | undefined): Partial<LockOwner> | undefined {
  if (!json) return undefined
  try {
    return JSON.parse(json) as Partial<LockOwner>
  } catch {
    return { who: `(unreadable owner.json: ${json.slice(0, 80)})` }
  }
}

async function withSessions<T>(ctx: RunContext, fn: () => Promise<T>): Promise<T> {
  try {
    await connectAll(ctx)
    return await fn()
  } finally {
    await closeAll(ctx)
  }
}

export function getLock(ctx: RunContext): Promise<LockInfo> {
  return withSessions(ctx, async () => {
    const p = primaryOf(ctx)
    const kv = parseKeyValues((await runOn(ctx, p, lockStatus(p.layout), { stage: 'lock' })).stdout)
    const owner = parseOwner(kv.get('OWNER')?.[0])
    const now = Number(kv.get('NOW')?.[0])
    if (kv.get('STATE')?.[0] !== 'held') return { host: p.host.name, state: 'free' }
    const expired = owner?.expires_epoch !== undefined && Number.isFinite(now) && now >= owner.expires_epoch
    return { host: p.host.name, state: expired ? 'expired' : 'held', owner }
  })
}

/** A person's `lock release`: removes the lock whoever holds it, saying whose it was. */
export function forceReleaseLock(ctx: RunContext): Promise<LockInfo> {
  return withSessions(ctx, async () => {
    const p = primaryOf(ctx)
    const kv = parseKeyValues((await runOn(ctx, p, releaseLock(p.layout), { stage: 'lock' })).stdout)
    const state = kv.get('STATE')?.[0]
    return {
      host: p.host.name,
      state: state === 'released' ? 'held' : 'free',
      owner: parseOwner(kv.get('OWNER')?.[0])
    }
  })
}

/** Releases the lock only if `token` holds it (the Action's post step after a cancel). */
export function releaseOwnLock(ctx: RunContext, token: string): Promise<string> {
  return withSessions(ctx, async () => {
    const p = primaryOf(ctx)
    const kv = parseKeyValues((await runOn(ctx, p, releaseLock(p.layout, token), { stage: 'lock' })).stdout)
    return kv.get('STATE')?.[0] ?? 'unknown'
  })
}

export interface HostStatus {
  host: string
  current?: string
  releases: number
  healthy?: boolean
  health?: string
  freeMb?: number
  usedMb?: number
  error?: string
}

/** `status`: per host the current release, one health probe, disk; plus the lock. */
export function getStatus(
  ctx: RunContext
): Promise<{ hosts: HostStatus[]; lock: LockInfo; databases: DatabaseSize[] }> {
  return withSessions(ctx, async () => {
    const hosts = await Promise.all(
      ctx.sessions.map(async (s): Promise<HostStatus> => {
        try {
          const kv = parseKeyValues(
            (await runOn(ctx, s, inspectHost(s.layout, [], []), { stage: 'status' })).stdout
          )
          const disk = parseKeyValues((await runOn(ctx, s, diskStatus(s.layout), { stage: 'status' })).stdout)
          const current = kv.get('CURRENT')?.[0]?.replace(/^releases\//, '') || undefined
          const st: HostStatus = {
            host: s.host.name,
            current,
            releases: (kv.get('RELEASE') ?? []).length,
            freeMb: Math.round(Number(disk.get('FREE_KB')?.[0]) / 1024),
            usedMb: Math.round(Number(disk.get('USED_KB')?.[0]) / 1024)
          }
          if (current && (httpChecks(ctx).length || ctx.config.verify.command)) {
            try {
              await verifyHost(ctx, s, current, 'status', 1)
              st.healthy = true
              st.health = 'healthy'
            } catch (e) {
              st.healthy = false
              st.health = errorMessage(e)
            }
          }
          return st
        } catch (e) {
          return { host: s.host.name, releases: 0, error: errorMessage(e) }
        }
      })
    )
    const p = primaryOf(ctx)
    const kv = parseKeyValues((await runOn(ctx, p, lockStatus(p.layout), { stage: 'lock' })).stdout)
    const owner = parseOwner(kv.get('OWNER')?.[0])
    const lock: LockInfo =
      kv.get('STATE')?.[0] === 'held'
        ? { host: p.host.name, state: 'held', owner }
        : { host: p.host.name, state: 'free' }
    return { hosts, lock, databases: await databaseSizes(ctx) }
  })
}

/** `plan`: every command a deploy would run, per host, in order. Connects to nothing. */
export function planDeploy(ctx: RunContext): string {
  const release = newReleaseId(new Date(), ctx.actor.commit)
  const c = ctx.config
  const out: string[] = []
  const show = (cmd: RemoteCommand) => {
    out.push(`# ${cmd.label}`)
    out.push(withEnv({ ...cmd, env: Object.fromEntries(Object.keys(cmd.env ?? {}).map(k => [k, `<${k}>`])) }))
    out.push('')
  }
  out.push(`# plan for ${c.app}: release ${release} (the time part is set when the deploy starts)`)
  out.push(`# every script below is sent over stdin to: ${REMOTE_SHELL}`)
  out.push('')
  if (c.stages.test) out.push('## runner: test', c.stages.test, '')
  out.push(
    '## runner: pack',
    `tar -czf release.tar.gz ${c.source.exclude.map(e => `--exclude=${e}`).join(' ')} -C ${ctx.loaded.sourceDir} .`,
    ''
  )
  for (const h of ctx.loaded.hosts) {
    const layout = new Layout(h.path)
    const fake = { host: h, t: undefined as never, releases: [], current: '<current>' }
    const env = (stage: string) => ({
      ...c.env,
      SAFE_DEPLOY_RELEASE: release,
      SAFE_DEPLOY_STAGE: stage,
      SAFE_DEPLOY_HOST: fake.host.name
    })
    out.push(`## host ${h.name}${h.primary ? ' (primary)' : ''}`)
    if (h.primary) {
      show(
        acquireLock(
          layout,
          { who: ctx.actor.who, pid: process.pid, runner: '<runner>', command: 'deploy', token: '<token>' },
          Math.ceil(c.lock.ttl / 1000)
        )
      )
    }
    show(inspectHost(layout, c.shared.files, ['tar', 'curl', 'wget']))
    if (h.primary) for (const cmd of backupPlanCommands(ctx, layout)) show(cmd)
    out.push('# upload (stdin: the tar.gz stream)', unpackCommand(layout, release), '')
    if (c.shared.files.length || c.shared.dirs.length)
      show(linkShared(layout, release, c.shared.files, c.shared.dirs))
    if (c.stages.build) show(inRelease(layout, release, 'build', c.stages.build, env('build')))
    show(markComplete(layout, release))
    if (c.switch.strategy === 'blue-green') {
      const bg = planBlueGreen(c, layout, release, env('switch'))
      out.push(bg.note, '')
      bg.commands.forEach(show)
    } else {
      show(switchCurrent(layout, release))
      if (c.stages.restart) show(inRelease(layout, release, 'restart', c.stages.restart, env('switch')))
    }
    for (const check of httpChecks(ctx)) {
      if (check.from === 'host') show(httpProbe(check.url, check.timeout))
      else out.push(`# runner: GET ${check.url} (expect ${check.expect_status})`, '')
    }
    out.push(`# on failure: switch back to <current>, restart it, verify it; or remove ${release}`)
    show(removeReleases(layout, ['<releases beyond keep_releases>']))
  }
  return ctx.log.redactor.redact(out.join('\n'))
}
