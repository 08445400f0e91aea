/**
 * The per-host part of a run's result (`RunResult.hostResults`) for the hosts left out by --skip-unreachable;
 * the connected hosts' rows come from the orchestrator (hostResultsOf in src/pipeline/orchestrator.ts).
 */
import type { RunContext } from '../host/context.js'
import type { HostResult } from '../pipeline/result.js'

/** The hosts --skip-unreachable left out, each with its connect error. */
export function skippedHostResults(ctx: RunContext): HostResult[] {
  return (ctx.unreachable ?? []).map(u => ({
    name: u.host.name,
    address: u.host.kind === 'ssh' ? u.host.address : undefined,
    roles: u.host.roles,
    stage: 'preflight',
    durationS: 0,
    result: 'skipped',
    error: `unreachable: ${u.error}`
  }))
}
