import type { NotifyEvent } from '../config/notify.js'
import { oneLine } from '../core/excerpt.js'
import type { RunCommand, RunResult } from '../pipeline/result.js'

/** One host in a notification: what the run did there. */
export interface NoticeHost {
  name: string
  /** ok, failed, rolled-back, rollback-failed, ... (RunResult.hostResults), or the run's own when it has none. */
  result?: string
  before?: string
  after?: string
  /** The stage it failed in. */
  stage?: string
  durationS?: number
  error?: string
}

/** What a notification says, whatever the channel: built once per event from the run (and its result). */
export interface Notice {
  event: NotifyEvent
  app: string
  command: RunCommand
  status?: RunResult['status']
  exitCode?: number
  release?: string
  previousRelease?: string
  commit?: string
  actor: string
  /** The CI run (a GitHub Actions run, a GitLab job): its URL from the platform, through the actor. */
  runUrl?: string
  hosts: NoticeHost[]
  durationS?: number
  /** Each stage's (and undo's) status and seconds, as the result records them. */
  stages?: { name: string; status: string; durationS: number }[]
  backupName?: string
  logFile?: string
  error?: { stage: string; host?: string; message: string }
  /** The run's verdict line (`DEPLOYMENT SUCCESS (12.3 s)`), or for `start` what is starting. */
  verdict: string
  started: string
  finished?: string
}

/** Who, where from: what the run knows before it ends. */
export interface NoticeRun {
  app: string
  command: RunCommand
  actor: string
  runUrl?: string
  commit?: string
  hosts: string[]
  started: string
}

/**
 * The event a finished run is: `success` (exit 0), `rollback` (a deploy that rolled back, exit 4, and every
 * manual rollback that switched: exit 0 or 4), `failure` (anything else: 1, 3, 5).
 */
export function eventOf(r: Pick<RunResult, 'command' | 'exitCode'>): NotifyEvent {
  if (r.command === 'rollback' && (r.exitCode === 0 || r.exitCode === 4)) return 'rollback'
  if (r.exitCode === 0) return 'success'
  if (r.exitCode === 4) return 'rollback'
  return 'failure'
}

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s)

/** The notice for `start`: the run is under way. */
export function startNotice(run: NoticeRun): Notice {
  return {
    event: 'start',
    app: run.app,
    command: run.command,
    commit: run.commit,
    actor: run.actor,
    runUrl: run.runUrl,
    hosts: run.hosts.map(name => ({ name })),
    verdict: `${run.command} of ${run.app} to ${run.hosts.join(', ')} started by ${run.actor}`,
    started: run.started
  }
}

/** Per host: RunResult.hostResults when the run has them, else the run's outcome on each of its hosts. */
function hostsOf(r: RunResult): NoticeHost[] {
  if (r.hostResults?.length)
    return r.hostResults.map(h => ({
      name: h.name,
      result: h.result,
      before: h.before,
      after: h.after,
      stage: h.result === 'ok' ? undefined : h.stage,
      durationS: h.durationS,
      error: h.error ? clip(oneLine(h.error), 300) : undefined
    }))
  const result =
    r.status === 'success'
      ? 'ok'
      : r.exitCode === 5
        ? 'rollback-failed'
        : r.status === 'rolled-back'
          ? 'rolled-back'
          : 'failed'
  return r.hosts.map(name => {
    const failedHere = !!r.error && (r.error.host === name || !r.error.host)
    return {
      name,
      result,
      stage: failedHere ? r.error?.stage : undefined,
      error: failedHere && r.error?.host === name ? clip(oneLine(r.error.message), 300) : undefined
    }
  })
}

/** The notice for how a run ended. Every text in `r` has been through the redactor (src/engine/events.ts). */
export function finishNotice(run: NoticeRun, r: RunResult): Notice {
  return {
    event: eventOf(r),
    app: run.app,
    command: r.command,
    status: r.status,
    exitCode: r.exitCode,
    release: r.release,
    previousRelease: r.previousRelease,
    commit: run.commit,
    actor: run.actor,
    runUrl: run.runUrl,
    hosts: hostsOf(r),
    durationS: r.durationS,
    stages: r.stages.map(st => ({ name: st.name, status: st.status, durationS: st.duration_s })),
    backupName: r.backupName,
    logFile: r.logFile,
    error: r.error ? { ...r.error, message: clip(oneLine(r.error.message), 500) } : undefined,
    verdict: clip(r.verdict.split('\n')[0] ?? '', 600),
    started: r.started,
    finished: r.finished
  }
}

/** `✅ shop: deploy succeeded`: the first line of every message. */
export function titleOf(n: Notice): string {
  const what = n.command === 'rollback' ? 'rollback' : 'deploy'
  if (n.event === 'start') return `🚀 ${n.app}: ${what} started`
  if (n.event === 'success') return `✅ ${n.app}: ${what} succeeded`
  if (n.event === 'rollback') {
    if (n.command === 'rollback' && n.exitCode === 0)
      return `↩️ ${n.app}: rolled back to ${n.release ?? 'the previous release'}`
    if (n.command === 'rollback') return `↩️ ${n.app}: rollback failed its checks and was undone`
    return `↩️ ${n.app}: deploy failed and was rolled back`
  }
  if (n.exitCode === 5) return `🚨 ${n.app}: ${what} failed and its rollback failed: a person must look`
  return `❌ ${n.app}: ${what} failed`
}

/** `web-1: rolled-back at verify (12.3 s): health check ...`: one line per host. */
export function hostLine(h: NoticeHost): string {
  const parts = [h.name]
  if (h.result) parts.push(`: ${h.result}`)
  if (h.stage) parts.push(` at ${h.stage}`)
  if (h.durationS !== undefined) parts.push(` (${h.durationS.toFixed(1)} s)`)
  if (h.error) parts.push(`: ${h.error}`)
  return parts.join('')
}

/** The label/value pairs every channel shows, in order; empty ones left out. */
export function factsOf(n: Notice): { label: string; value: string }[] {
  const facts: [string, string | undefined][] = [
    ['app', n.app],
    ['command', n.command],
    ['release', n.release],
    ['previous', n.previousRelease],
    ['commit', n.commit],
    ['actor', n.actor],
    ['duration', n.durationS !== undefined ? `${n.durationS.toFixed(1)} s` : undefined],
    ['backup', n.backupName],
    ['failed at', n.error ? `${n.error.stage}${n.error.host ? ` on ${n.error.host}` : ''}` : undefined],
    ['log', n.logFile]
  ]
  return facts.flatMap(([label, value]) => (value ? [{ label, value }] : []))
}
