import type { HostSession, RunContext } from '../host/context.js'

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
