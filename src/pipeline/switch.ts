/**
 * The switch strategies: one file each (src/pipeline/symlink.ts, bluegreen.ts) implementing SwitchStrategy
 * (src/pipeline/strategy.ts), one line each here. Their settings are the variants of `switch` in
 * src/config/schema.ts; the type below makes a variant without a line here a compile error.
 */
import type { SwitchConfig } from '../config/schema.js'
import type { RunContext } from '../host/context.js'
import { blueGreenStrategy } from './bluegreen.js'
import { gracefulStrategy, symlinkStrategy } from './symlink.js'
import type { SwitchStrategy } from './strategy.js'

export type { SwitchStrategy }

const strategies: { readonly [K in SwitchConfig['strategy']]: () => SwitchStrategy } = {
  symlink: symlinkStrategy,
  graceful: gracefulStrategy,
  'blue-green': blueGreenStrategy
}

export function strategyFor(ctx: RunContext): SwitchStrategy {
  const strategy = strategies[ctx.config.switch.strategy]()
  // a run that saves its progress (the Action) saves it around each host's switch and its undo
  return ctx.progress ? ctx.progress.watch(strategy) : strategy
}
