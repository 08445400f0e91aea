import { renewLock } from '../commands/lock.js'
import { parseKeyValues } from '../commands/release.js'
import { lockSessionOf, runOn, type RunContext } from './context.js'
import { errorMessage } from '../core/errors.js'
import { runController } from '../core/signal.js'

/**
 * The deploy lock is a lease: while a run holds it, a timer renews it every ttl/3, whatever stage is running
 * (a 15 s build under a 6 s ttl included). When a renewal finds the lock gone or taken by someone else, or no
 * renewal has gone through for a whole ttl (so the lock may have expired and been taken over), the lease is
 * lost: the run's signal is aborted with that reason and the orchestrator undoes what the run changed.
 *
 * One mechanism for every command that takes the lock: the orchestrator starts it around the stages.
 */
export interface Lease {
  /** Why the lock was lost (undefined while it is held, or before it is taken). */
  readonly lost: string | undefined
  /** The signal the stages run with: the caller's, also aborted when the lease is lost. */
  readonly signal: AbortSignal
  /** From now on (the undo steps), keeps renewing but aborts nothing: a lost lock is only reported. */
  settle(): void
  /** Stops renewing (aborting nothing). Safe to call more than once. */
  stop(): void
}

export function startLease(ctx: RunContext): Lease {
  const ttl = ctx.config.lock.ttl
  const every = Math.max(200, Math.floor(ttl / 3))
  const controller = runController()
  const outer = ctx.signal
  const onOuter = () => controller.abort(outer.reason)
  if (outer.aborted) controller.abort(outer.reason)
  else outer.addEventListener('abort', onOuter, { once: true })

  let lost: string | undefined
  let stopped = false
  let settled = false
  let busy = false
  /** The last time we know the lock was ours (taken or renewed), by the runner's monotonic clock. */
  let lastOk: number | undefined
  let token: string | undefined

  const lose = (why: string) => {
    if (lost || stopped) return
    lost = why
    if (settled) {
      ctx.log.warn(why)
      return
    }
    ctx.log.error(`${why}; stopping and undoing what this run changed`)
    controller.abort(new Error(why))
  }

  const tick = async () => {
    if (busy || stopped || lost) return
    const owner = ctx.lock
    if (!owner || !ctx.sessions.length) return
    if (owner.token !== token) {
      // the lock was (re)taken since the last tick: the lease starts now
      token = owner.token
      lastOk = performance.now()
    }
    busy = true
    try {
      const p = lockSessionOf(ctx)
      // a signal of its own: the renewal must not be cut by the abort it may cause, and must not hang
      const r = await runOn(
        { ...ctx, signal: AbortSignal.timeout(Math.max(every, 5_000)) },
        p,
        renewLock(p.layout, owner, Math.ceil(ttl / 1000)),
        { stage: 'lock', timeoutMs: Math.max(every, 5_000) }
      )
      if (stopped) return
      const state = parseKeyValues(r.stdout).get('STATE')?.[0]
      if (state === 'renewed') {
        lastOk = performance.now()
      } else if (state === 'lost') {
        lose(
          `the deploy lock was lost on ${p.host.name}: it was removed or taken by another run while this run held it`
        )
      } else {
        ctx.log.warn(`could not renew the lock (state ${state ?? 'unknown'})`, p.host.name)
      }
    } catch (e) {
      if (!stopped) ctx.log.warn(`could not renew the lock: ${errorMessage(e)}`)
    } finally {
      busy = false
    }
    if (!stopped && !lost && lastOk !== undefined && performance.now() - lastOk >= ttl) {
      lose(
        `the deploy lock was lost: it could not be renewed for ${Math.round(ttl / 1000)} s (lock.ttl), so it may have expired and been taken over`
      )
    }
  }

  const timer = setInterval(() => void tick(), every)
  timer.unref?.()
  return {
    get lost() {
      return lost
    },
    signal: controller.signal,
    settle() {
      settled = true
    },
    stop() {
      stopped = true
      clearInterval(timer)
      outer.removeEventListener('abort', onOuter)
    }
  }
}
