import { lockStatus, releaseLock } from '../commands/lock.js'
import { diskStatus, inspectHost, parseKeyValues } from '../commands/release.js'
import {
  closeAll,
  connectAll,
  lockSessionOf,
  runOn,
  type HostSession,
  type RunContext
} from '../host/context.js'
import { httpChecks, verifyHost } from '../pipeline/checks.js'
import { StageError, errorMessage } from '../core/errors.js'
import type { LockOwner } from '../commands/lock.js'
import { databaseSizes, type DatabaseSize } from '../backup/ops/probe.js'

export interface LockInfo {
  /** The host holding the global lock: the config's primary (also when the selection leaves it out). */
  host: string
  /** unknown: the primary cannot be reached (status). */
  state: 'free' | 'held' | 'expired' | 'unknown'
  owner?: Partial<LockOwner>
  error?: string
}

function parseOwner(json: string | undefined): Partial<LockOwner> | undefined {
  if (!json) return undefined
  try {
    return JSON.parse(json) as Partial<LockOwner>
  } catch {
    return { who: `(unreadable owner.json: ${json.slice(0, 80)})` }
  }
}

/** Connects for a read-only command: a host out of reach is in `ctx.unreachable`, for the command to show. */
async function withSessions<T>(ctx: RunContext, fn: () => Promise<T>): Promise<T> {
  try {
    await connectAll(ctx, { tolerate: true })
    return await fn()
  } finally {
    await closeAll(ctx)
  }
}

/** The config's primary, where the global lock lives; a StageError naming it when it cannot be reached. */
function lockHost(ctx: RunContext): HostSession {
  const { loaded } = ctx
  const wanted = loaded.lockHost ?? loaded.hosts.find(h => h.primary)
  const down = ctx.unreachable?.find(u => u.host === wanted)
  if (down)
    throw new StageError(
      'lock',
      `the primary ${down.host.name}, which holds the deploy lock, cannot be reached: ${down.error}`,
      down.host.name
    )
  return lockSessionOf(ctx)
}

async function readLock(ctx: RunContext, p: HostSession): Promise<LockInfo> {
  const kv = parseKeyValues((await runOn(ctx, p, lockStatus(p.layout), { stage: 'lock' })).stdout)
  const owner = parseOwner(kv.get('OWNER')?.[0])
  const now = Number(kv.get('NOW')?.[0])
  if (kv.get('STATE')?.[0] !== 'held') return { host: p.host.name, state: 'free' }
  const expired = owner?.expires_epoch !== undefined && Number.isFinite(now) && now >= owner.expires_epoch
  return { host: p.host.name, state: expired ? 'expired' : 'held', owner }
}

export function getLock(ctx: RunContext): Promise<LockInfo> {
  return withSessions(ctx, () => readLock(ctx, lockHost(ctx)))
}

/** A person's `lock release`: removes the lock whoever holds it, saying whose it was. */
export function forceReleaseLock(ctx: RunContext): Promise<LockInfo> {
  return withSessions(ctx, async () => {
    const p = lockHost(ctx)
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
    const p = lockHost(ctx)
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
  /** The host could not be reached (its `error` says why). */
  unreachable?: boolean
  roles?: string[]
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
            roles: s.host.roles,
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
          return { host: s.host.name, roles: s.host.roles, releases: 0, error: errorMessage(e) }
        }
      })
    )
    // every selected host, in config order: those out of reach too
    const down = (ctx.unreachable ?? []).filter(u => u.host !== ctx.loaded.lockHost)
    const all = [
      ...hosts,
      ...down.map((u): HostStatus => ({
        host: u.host.name,
        roles: u.host.roles,
        releases: 0,
        unreachable: true,
        error: `unreachable: ${u.error}`
      }))
    ]
    const order = ctx.loaded.hosts.map(h => h.name)
    all.sort((a, b) => order.indexOf(a.host) - order.indexOf(b.host))
    let lock: LockInfo
    try {
      lock = await readLock(ctx, lockHost(ctx))
    } catch (e) {
      const host = ctx.loaded.lockHost ?? ctx.loaded.hosts.find(h => h.primary)
      lock = { host: host?.name ?? '?', state: 'unknown', error: errorMessage(e) }
    }
    // the databases are probed from the primary: not when it is out of reach
    const primaryDown = down.some(u => u.host.primary)
    return {
      hosts: all,
      lock,
      databases: primaryDown || !ctx.sessions.length ? [] : await databaseSizes(ctx)
    }
  })
}
