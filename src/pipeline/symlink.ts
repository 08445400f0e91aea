/**
 * The symlink and graceful switches: `current` points at the release, then stages.restart (symlink) or
 * switch.reload (graceful) runs inside it; undo points `current` back and runs the same command there.
 * With stages.stop, the release that serves is stopped first (and on undo the new one, before the old restarts).
 */
import { removeCurrent, switchCurrent } from '../commands/release.js'
import { runOn, type HostSession, type RunContext } from '../host/context.js'
import { runHook } from '../host/hook.js'
import type { SwitchStrategy } from './strategy.js'

/** Points `current` at a release and runs a command there: restart (symlink) or reload (graceful). */
function symlinkFamily(
  name: 'symlink' | 'graceful',
  command: (ctx: RunContext) => string | undefined
): () => SwitchStrategy {
  return () => {
    const live = new Set<HostSession>()
    return {
      name,
      wentLive: s => live.has(s),
      save: s => ({ live: live.has(s) }),
      resume: (s, saved) => {
        if ((saved as { live?: boolean } | undefined)?.live !== false) live.add(s)
      },
      async activate(ctx, s, release, stage) {
        live.add(s)
        const stop = ctx.config.stages.stop
        // stop-before-start: the old instance is gone before the new one starts (long-polling bots)
        if (stop && s.current && s.current !== release) {
          await runHook(ctx, s, s.current, 'stop', stop, stage)
          ctx.log.info(`stopped releases/${s.current} (stages.stop)`, s.host.name)
        }
        await runOn(ctx, s, switchCurrent(s.layout, release), { stage })
        ctx.log.info(`current -> releases/${release}`, s.host.name)
        const cmd = command(ctx)
        if (cmd) await runHook(ctx, s, release, name === 'graceful' ? 'reload' : 'restart', cmd, stage)
      },
      async restore(ctx, s, release, stage) {
        if (!live.has(s)) return
        const stop = ctx.config.stages.stop
        // the new instance stops before the old one starts again, as on the way in
        if (stop && s.current !== release) await runHook(ctx, s, release, 'stop', stop, stage)
        if (s.current) {
          await runOn(ctx, s, switchCurrent(s.layout, s.current), { stage })
          ctx.log.info(`current -> releases/${s.current} (restored)`, s.host.name)
          const cmd = command(ctx)
          if (cmd) await runHook(ctx, s, s.current, name === 'graceful' ? 'reload' : 'restart', cmd, stage)
        } else {
          await runOn(ctx, s, removeCurrent(s.layout), { stage })
          ctx.log.warn(
            stop
              ? 'there was no previous release: removed `current` (the new release was stopped with stages.stop)'
              : 'there was no previous release: removed `current` (the app was already restarted with the new code and may still be running it)',
            s.host.name
          )
        }
      }
    }
  }
}

export const symlinkStrategy = symlinkFamily('symlink', ctx => ctx.config.stages.restart)

export const gracefulStrategy = symlinkFamily('graceful', ctx =>
  ctx.config.switch.strategy === 'graceful' ? ctx.config.switch.reload : undefined
)
