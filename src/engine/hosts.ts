/**
 * The per-host part of a run's result (`RunResult.hostResults`): the hosts left out by --skip-unreachable,
 * and a minimal row per connected host from what the run as a whole did (the rollout computes its own rows
 * per host where it runs batches).
 */
import type { RunContext } from '../host/context.js'
import type { Outcome } from '../pipeline/orchestrator.js'
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

/**
 * One row per connected host from the run's outcome: the host a failure names carries its error; every host
 * ends as the run did (ok, rolled back, nothing changed, or a rollback that failed: `hostStates` says more).
 */
export function minimalHostResults(
  ctx: RunContext,
  outcome: Outcome,
  release: string | undefined,
  durationS: number
): HostResult[] {
  const f = outcome.failure
  const reached = outcome.records.filter(r => r.status !== 'skipped').at(-1)?.name
  return ctx.sessions.map((s): HostResult => {
    const own = f && f.host === s.host.name
    const result: HostResult['result'] = !f
      ? 'ok'
      : outcome.rollbackFailed
        ? 'rollback-failed'
        : outcome.rolledBack
          ? 'rolled-back'
          : 'failed'
    return {
      name: s.host.name,
      address: s.host.kind === 'ssh' ? s.host.address : undefined,
      roles: s.host.roles,
      before: s.current,
      after: !f ? (release ?? s.current) : outcome.rollbackFailed ? undefined : s.current,
      stage: own ? f.stage : reached,
      durationS,
      result,
      ...(own ? { error: f.message } : {})
    }
  })
}
