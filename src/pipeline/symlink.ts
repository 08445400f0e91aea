/**
 * The symlink and graceful switches: `current` points at the release, then stages.restart (symlink) or
 * switch.reload (graceful) runs inside it; undo points `current` back and runs the same command there.
 * With stages.stop, the release that serves is stopped first (and on undo the new one, before the old restarts).
 */
import { SWITCHED_MARKER, inRelease, removeCurrent, switchCurrent, switchThen } from '../commands/release.js'
import { StageError, errorMessage } from '../core/errors.js'
import { lastLines, runOn, type HostSession, type RunContext } from '../host/context.js'
import { hookEnv } from '../host/env.js'
import { runHook } from '../host/hook.js'
import type { SwitchStrategy } from './strategy.js'

/** Points `current` at a release and runs a command there: restart (symlink) or reload (graceful). */
function symlinkFamily(
  name: 'symlink' | 'graceful',
  command: (ctx: RunContext) => string | undefined
): () => SwitchStrategy {
  /**
   * `current` -> the release, then the command inside it: one script (switchThen). Its marker line says the
   * switch is done, so the log has `current -> ...` before the command's output, and a failure names the
   * step that failed: the switch (current unchanged) or the command after it.
   */
  const switchAndRun = async (
    ctx: RunContext,
    s: HostSession,
    release: string,
    stage: string,
    note: string
  ): Promise<void> => {
    const cmd = command(ctx)
    const switched = () => ctx.log.info(`current -> releases/${release}${note}`, s.host.name)
    if (!cmd) {
      await runOn(ctx, s, switchCurrent(s.layout, release), { stage })
      switched()
      return
    }
    const label = name === 'graceful' ? 'reload' : 'restart'
    const hook = inRelease(s.layout, release, label, cmd, hookEnv(ctx, s, release, stage))
    let done = false
    const marker = {
      line: SWITCHED_MARKER,
      seen: () => {
        done = true
        switched()
      }
    }
    const fused = switchThen(s.layout, release, hook)
    const what = () => (done ? label : switchCurrent(s.layout, release).label)
    let r
    try {
      r = await runOn(ctx, s, fused, { stage, allowFail: true, marker })
    } catch (e) {
      // the connection failed: name the step it failed in, as when each was a command of its own
      const prefix = `${fused.label} on ${s.host.name}: `
      const m = errorMessage(e)
      throw new StageError(
        stage,
        `${what()} on ${s.host.name}: ${m.startsWith(prefix) ? m.slice(prefix.length) : m}`,
        s.host.name
      )
    }
    if (r.code === 0) {
      // a dry run's recording transport answers without the marker
      if (!done) switched()
      return
    }
    const detail = lastLines(r.stderr || r.stdout.split(`${SWITCHED_MARKER}\n`).join(''), 8)
    throw new StageError(
      stage,
      `${what()} failed on ${s.host.name} (exit ${r.code})${detail ? `: ${detail}` : ''}`,
      s.host.name
    )
  }
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
        await switchAndRun(ctx, s, release, stage, '')
      },
      async restore(ctx, s, release, stage) {
        if (!live.has(s)) return
        const stop = ctx.config.stages.stop
        // the new instance stops before the old one starts again, as on the way in
        if (stop && s.current !== release) await runHook(ctx, s, release, 'stop', stop, stage)
        if (s.current) {
          await switchAndRun(ctx, s, s.current, stage, ' (restored)')
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
