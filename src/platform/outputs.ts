import { writeFileSync } from 'node:fs'
import { ConfigError } from '../core/exit.js'
import type { RunResult } from '../pipeline/result.js'
import { failedHosts } from '../report/hosts.js'

/** The outputs every platform publishes (README "Outputs"), by their Action names. */
export function outputsOf(r: RunResult): Record<string, string> {
  return {
    status: r.status,
    release: r.release ?? '',
    'previous-release': r.previousRelease ?? '',
    'rolled-back': String(r.rolledBack),
    'backup-name': r.backupName ?? '',
    'backup-path': r.backupPath ?? '',
    'log-file': r.logFile ?? '',
    'report-file': r.reportFile ?? '',
    duration: String(r.durationS),
    'exit-code': String(r.exitCode),
    'failed-hosts': failedHosts(r.hostResults ?? []).join(','),
    'hosts-json': JSON.stringify(r.hostResults ?? [])
  }
}

/** Outputs left out of the dotenv file: the per-host JSON is for fromJSON in a workflow, not a variable. */
const NOT_IN_DOTENV = new Set(['hosts-json'])

/**
 * The environment's URL (`--environment-url`, SAFE_DEPLOY_ENVIRONMENT_URL): an http(s) URL, one line, no
 * spaces or quotes. Refused before anything runs, as any bad input is.
 */
export function parseEnvironmentUrl(value: string, what: string): string {
  if (!/^https?:\/\/[^\s"'`\\$<>]+$/.test(value))
    throw new ConfigError(`${what}: expected an http:// or https:// URL, got ${JSON.stringify(value)}`)
  return value
}

/**
 * What GitLab shows as the environment's URL (`environment:url: $DYNAMIC_ENVIRONMENT_URL`), for a deploy or
 * a rollback: the URL, and for a rollback that succeeded the release it put back as a fragment (`#release=...`), since
 * GitLab records a job's deployment with the pipeline's commit, whatever release the server now runs.
 */
function environmentUrlOf(r: RunResult, url: string | undefined): string | undefined {
  if (!url || (r.command !== 'deploy' && r.command !== 'rollback')) return undefined
  return r.command === 'rollback' && r.status === 'success' && r.release && !url.includes('#')
    ? `${url}#release=${r.release}`
    : url
}

/**
 * A dotenv file for GitLab's `artifacts:reports:dotenv`: `SAFE_DEPLOY_RELEASE=...` lines, and
 * `DYNAMIC_ENVIRONMENT_URL` when an environment URL is configured. Values are ours (names, paths, numbers, a
 * checked URL) and never contain newlines; anything else is dropped rather than written half.
 */
export function writeDotenv(file: string, r: RunResult, environmentUrl?: string): void {
  const dynamicUrl = environmentUrlOf(r, environmentUrl)
  const lines = [
    ...Object.entries(outputsOf(r))
      .filter(([k]) => !NOT_IN_DOTENV.has(k))
      .map(([k, v]) => [`SAFE_DEPLOY_${k.toUpperCase().replace(/-/g, '_')}`, v]),
    ...(dynamicUrl ? [['DYNAMIC_ENVIRONMENT_URL', dynamicUrl]] : [])
  ]
    .filter(([, v]) => !/[\r\n]/.test(v ?? ''))
    .map(([k, v]) => `${k}=${v}`)
  writeFileSync(file, lines.join('\n') + '\n')
}
