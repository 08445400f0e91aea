import { configForRoles } from '../config/rules.js'
import type { HostSession, RunContext } from '../host/context.js'

/**
 * The run as one host sees it: its config with its roles' overrides (stages.restart, switch, verify) in place
 * of the top-level keys (src/config/rules.ts). The switch strategies and the checks read their settings from
 * the context they are given, so they get this one for the host they work on.
 */
export function forHost(ctx: RunContext, s: HostSession): RunContext {
  const config = configForRoles(ctx.config, s.host.roles ?? [])
  return config === ctx.config ? ctx : { ...ctx, config }
}
