import { removeCurrent, switchCurrent } from '../commands/release.js'
import { runOn, type HostSession, type RunContext } from '../host/context.js'
import { runHook } from '../host/hook.js'
import { blueGreenStrategy } from './bluegreen.js'

export { runHook }

/**
 * How a release starts serving on a host, and how that is undone. One instance per run: strategies may
 * remember per-host state (blue-green: which port served before) between activate, restore and retire.
 */
export interface SwitchStrategy {
  readonly name: string
  /** Makes `release` the one serving on `s` (`s.current` is the release that served before). */
  activate(ctx: RunContext, s: HostSession, release: string, stage: string): Promise<void>
  /** Undoes `activate` on `s`, also a partial one: `s.current` serves again, or nothing when there was none. */
  restore(ctx: RunContext, s: HostSession, release: string, stage: string): Promise<void>
  /** After verify passed: retire what served before (blue-green: drain and stop the old port). */
  retire?(ctx: RunContext, s: HostSession, release: string): Promise<void>
  /** Whether `activate` got as far as changing what users see on `s`. */
  wentLive(s: HostSession): boolean
  /** blue-green: the port `activate` started the release on, for history. */
  port?(s: HostSession): number | undefined
  /**
   * What this instance knows about `s` (JSON-safe), for another process to undo the switch: `resume` in a
   * fresh instance, then `restore` (the Action's post step after the main step was killed).
   */
  save?(s: HostSession): unknown
  /** Takes back what `save` returned for `s`, in a fresh instance, before a `restore`. */
  resume?(s: HostSession, saved: unknown): void
}

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
        await runOn(ctx, s, switchCurrent(s.layout, release), { stage })
        ctx.log.info(`current -> releases/${release}`, s.host.name)
        const cmd = command(ctx)
        if (cmd) await runHook(ctx, s, release, name === 'graceful' ? 'reload' : 'restart', cmd, stage)
      },
      async restore(ctx, s, _release, stage) {
        if (!live.has(s)) return
        if (s.current) {
          await runOn(ctx, s, switchCurrent(s.layout, s.current), { stage })
          ctx.log.info(`current -> releases/${s.current} (restored)`, s.host.name)
          const cmd = command(ctx)
          if (cmd) await runHook(ctx, s, s.current, name === 'graceful' ? 'reload' : 'restart', cmd, stage)
        } else {
          await runOn(ctx, s, removeCurrent(s.layout), { stage })
          ctx.log.warn(
            'there was no previous release: removed `current` (the app was already restarted with the new code and may still be running it)',
            s.host.name
          )
        }
      }
    }
  }
}

const factories: Record<string, () => SwitchStrategy> = {
  symlink: symlinkFamily('symlink', ctx => ctx.config.stages.restart),
  graceful: symlinkFamily('graceful', ctx => ctx.config.switch.reload),
  'blue-green': blueGreenStrategy
}

/** Lets another module add a strategy (built-in: symlink, graceful, blue-green in src/pipeline/bluegreen.ts). */
export function registerStrategy(name: string, factory: () => SwitchStrategy): void {
  factories[name] = factory
}

export function strategyFor(ctx: RunContext): SwitchStrategy {
  const factory = factories[ctx.config.switch.strategy]
  if (!factory)
    throw new Error(`switch.strategy ${ctx.config.switch.strategy} is not available in this build`)
  // a run that saves its progress (the Action) saves it around each host's switch and its undo
  return ctx.progress ? ctx.progress.watch(factory()) : factory()
}
