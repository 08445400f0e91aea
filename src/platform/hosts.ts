import type { HostResult, RunResult } from '../pipeline/result.js'

/** At most this many per-host annotations: a fleet of fifty failing hosts is one look at the summary. */
export const MAX_HOST_ANNOTATIONS = 10

/** One row of the job summary's host table, one annotation of a failed host. */
export type HostRow = Pick<HostResult, 'name' | 'result' | 'stage' | 'before' | 'after' | 'error'>

const FAILED: HostResult['result'][] = ['failed', 'rollback-failed', 'unreachable']

/**
 * Per host, what the run did: the run's `hostResults` when it has them; else from its stages, the host a
 * failed stage names failed there (its first error) and every other host shares the run's status.
 */
export function hostRows(r: RunResult): HostRow[] {
  if (r.hostResults?.length) return r.hostResults
  const failedAt = new Map<string, { stage: string; error?: string; undo: boolean }>()
  for (const s of r.stages) {
    if (!s.host || (s.status !== 'failed' && s.status !== 'undo-failed')) continue
    const seen = failedAt.get(s.host)
    if (!seen) failedAt.set(s.host, { stage: s.name, error: s.error, undo: s.status === 'undo-failed' })
    else if (s.status === 'undo-failed') seen.undo = true
  }
  if (r.error?.host && !failedAt.has(r.error.host))
    failedAt.set(r.error.host, { stage: r.error.stage, error: r.error.message, undo: false })
  const overall: HostResult['result'] =
    r.status === 'success'
      ? 'ok'
      : r.exitCode === 5
        ? 'rollback-failed'
        : r.rolledBack
          ? 'rolled-back'
          : 'failed'
  const after = r.status === 'success' ? r.release : r.rolledBack ? r.previousRelease : undefined
  return r.hosts.map(name => {
    const f = failedAt.get(name)
    return {
      name,
      // as the run's per-host report has it: a host put back is rolled-back, its own error with it
      result: f?.undo ? 'rollback-failed' : f && overall !== 'rolled-back' ? 'failed' : overall,
      stage: f?.stage,
      before: r.previousRelease,
      after: r.exitCode === 5 ? undefined : after,
      error: f?.error
    }
  })
}

/** The hosts a failed run failed on, each with its own first error. */
export function failedHosts(r: RunResult): HostRow[] {
  if (r.status === 'success') return []
  return hostRows(r).filter(h => !!h.error || FAILED.includes(h.result))
}

/**
 * The annotations of a failed run with several failed hosts: one per host, titled
 * `safe-deploy <command>: <host> <stage>`, with that host's error (at most MAX_HOST_ANNOTATIONS), and how
 * many were left out. None with one failed host or none: the verdict (which names the host) is the annotation.
 */
export function hostAnnotations(r: RunResult): {
  annotations: { title: string; message: string }[]
  more: number
} {
  const failed = failedHosts(r)
  if (failed.length < 2) return { annotations: [], more: 0 }
  return {
    annotations: failed.slice(0, MAX_HOST_ANNOTATIONS).map(h => ({
      title: `safe-deploy ${r.command}: ${h.name}${h.stage ? ` ${h.stage}` : ''}`,
      message: h.error ?? r.verdict
    })),
    more: Math.max(0, failed.length - MAX_HOST_ANNOTATIONS)
  }
}
