/**
 * The switch strategies: one file each (src/pipeline/symlink.ts, bluegreen.ts) implementing SwitchStrategy
 * (src/pipeline/strategy.ts), one line each here. Their settings are the variants of `switch` in
 * src/config/schema.ts; the type below makes a variant without a line here a compile error.
 */
import type { SwitchConfig } from '../config/schema.js'
import type { HostSession, RunContext } from '../host/context.js'
import { forHost } from './roles.js'
import { blueGreenStrategy } from './bluegreen.js'
import { gracefulStrategy, symlinkStrategy } from './symlink.js'
import type { SwitchStrategy } from './strategy.js'

export type { SwitchStrategy }

const strategies: { readonly [K in SwitchConfig['strategy']]: () => SwitchStrategy } = {
  symlink: symlinkStrategy,
  graceful: gracefulStrategy,
  'blue-green': blueGreenStrategy
}

/**
 * The run's switch: per host, the strategy of its `switch` (its role's, else the top-level one), told the
 * host's config (forHost). One instance per strategy for the run, shared by its hosts.
 */
export function strategyFor(ctx: RunContext): SwitchStrategy {
  const made = new Map<string, SwitchStrategy>()
  const of = (c: RunContext, s: HostSession): [SwitchStrategy, RunContext] => {
    const hc = forHost(c, s)
    const name = hc.config.switch.strategy
    let st = made.get(name)
    if (!st) made.set(name, (st = strategies[name]()))
    return [st, hc]
  }
  const name = ctx.config.switch.strategy
  const strategy: SwitchStrategy = {
    name,
    async activate(c, s, release, stage) {
      const [st, hc] = of(c, s)
      await st.activate(hc, s, release, stage)
    },
    async restore(c, s, release, stage) {
      const [st, hc] = of(c, s)
      await st.restore(hc, s, release, stage)
    },
    async retire(c, s, release) {
      const [st, hc] = of(c, s)
      await st.retire?.(hc, s, release)
    },
    wentLive: s => of(ctx, s)[0].wentLive(s),
    port: s => of(ctx, s)[0].port?.(s),
    save: s => of(ctx, s)[0].save?.(s),
    resume: (s, saved) => of(ctx, s)[0].resume?.(s, saved)
  }
  // a run that saves its progress (the Action) saves it around each host's switch and its undo
  return ctx.progress ? ctx.progress.watch(strategy) : strategy
}
