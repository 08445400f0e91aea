import { lockStatus, releaseLock } from '../commands/lock.js'
import { diskStatus, inspectHost, parseKeyValues } from '../commands/release.js'
import { closeAll, connectAll, primaryOf, runOn, type RunContext } from '../host/context.js'
import { httpChecks, verifyHost } from '../pipeline/checks.js'
import { errorMessage } from '../core/errors.js'
import type { LockOwner } from '../commands/lock.js'
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
