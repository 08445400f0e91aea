import { writeFileSync } from 'node:fs'
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
 * A dotenv file for GitLab's `artifacts:reports:dotenv`: `SAFE_DEPLOY_RELEASE=...` lines. Values are ours
 * (names, paths, numbers) and never contain newlines; anything else is dropped rather than written half.
 */
export function writeDotenv(file: string, r: RunResult): void {
  const lines = Object.entries(outputsOf(r))
    .filter(([k, v]) => !NOT_IN_DOTENV.has(k) && !/[\r\n]/.test(v))
    .map(([k, v]) => `SAFE_DEPLOY_${k.toUpperCase().replace(/-/g, '_')}=${v}`)
  writeFileSync(file, lines.join('\n') + '\n')
}
