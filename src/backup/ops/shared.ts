import type { RunContext, HostSession } from '../../host/context.js'
import { StageError } from '../../core/errors.js'
import { ExitCode } from '../../core/exit.js'
import { parseKeyValues } from '../../commands/release.js'
import { backupConfigOf, resolvePlan, type BackupPlan } from '../../backup-engines/plan.js'
import type { BackupName } from '../../backup-engines/name.js'
import type { BuiltCommand } from '../script.js'

/** What the backup operations (ops/take.ts, list, verify, restore, prune, download, probe) share. */

/** Dumps and restores may take long; a hung one still ends (ssh.command_timeout if that is longer). */
const LONG_TIMEOUT_MS = 6 * 3600_000

export function longTimeout(ctx: RunContext): number {
  return Math.max(ctx.config.ssh.command_timeout, LONG_TIMEOUT_MS)
}

/** The backup plan for a host; throws (exit 2) when the config has no backup section. */
export function planFor(ctx: RunContext, s: HostSession, stage: string): BackupPlan {
  const b = backupConfigOf(ctx.config)
  if (!b)
    throw new StageError(
      stage,
      'backups are not configured: add a backup: section to the config (see docs/backups.md)',
      undefined,
      ExitCode.badInput
    )
  return resolvePlan(ctx.config.app, b, s.layout, ctx.config.env)
}

/** Reads RC=/ERR=/FAIL= lines: the step that failed first (a SIGPIPE, 141, only when nothing else failed). */
export function describeFailure(cmd: BuiltCommand, stdout: string, stderr: string, code: number): string {
  const kv = parseKeyValues(stdout)
  const failMsg = kv.get('FAIL')?.[0]
  const errs = new Map<string, string[]>()
  for (const line of kv.get('ERR') ?? []) {
    const i = line.indexOf(' ')
    const id = i < 0 ? line : line.slice(0, i)
    errs.set(id, [...(errs.get(id) ?? []), i < 0 ? '' : line.slice(i + 1)])
  }
  const rcs = (kv.get('RC') ?? []).map(l => l.split(' ') as [string, string])
  const first = rcs.find(([, rc]) => rc !== '141') ?? rcs[0]
  const parts: string[] = []
  if (first) {
    const [id, rc] = first
    const said = (errs.get(id) ?? []).filter(Boolean).slice(-8).join('\n')
    const status =
      rc === 'none'
        ? 'did not finish (or its exit status could not be written)'
        : rc === '127'
          ? 'was not found (exit 127)'
          : `exited ${rc}`
    parts.push(`${cmd.steps[id] ?? id} ${status}${said ? `: ${said}` : ''}`)
  }
  if (failMsg) parts.push(failMsg)
  const free = Number(kv.get('FREE_KB')?.[0])
  if (Number.isFinite(free) && free < 1024) parts.push(`the disk is full (${free} KiB free)`)
  const sums = kv.get('SUM') ?? []
  if (sums.length) parts.push(sums.join('\n'))
  if (!parts.length)
    parts.push(`exit ${code}${stderr.trim() ? `: ${stderr.trim().split('\n').slice(-8).join('\n')}` : ''}`)
  return parts.join('; ')
}

/** Warnings a passing step printed on stderr (pg_dump warnings, skipped files), for the log. */
export function stepWarnings(cmd: BuiltCommand, stdout: string): string[] {
  return (parseKeyValues(stdout).get('ERR') ?? []).map(l => {
    const i = l.indexOf(' ')
    return `${cmd.steps[l.slice(0, i)] ?? '?'}: ${l.slice(i + 1)}`
  })
}

export interface BackupFile {
  file: string
  bytes: number
}

export interface BackupResult {
  name: BackupName
  /** The backup dir on the host. */
  dir: string
  /** The main artifact on the host: the (first) database dump, else the files archive. */
  path: string
  host: string
  files: BackupFile[]
  bytes: number
  encrypted: boolean
  /** How it was verified: the file itself, the plain stream before encryption, or the decrypted file. */
  verified: 'file' | 'stream' | 'decrypted'
  durationS: number
}

/** NAME.meta.json: what a person (or `backups list`) wants to know about a backup, next to it. */
export interface BackupMeta {
  version: 1
  app: string
  name: string
  created: string
  host: string
  reason: string
  release?: string
  current?: string
  by: string
  databases: { label: string; engine: string; database?: string; path?: string; container?: string }[]
  files: string[]
  encrypted: boolean
  recipients: string[]
  verified: BackupResult['verified']
  tools: Record<string, string>
  safe_deploy: string
}

export const mib = (bytes: number) =>
  bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`
