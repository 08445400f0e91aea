import { resolve } from 'node:path'
import { readLocalBackup, uploadBackup } from '../backup/ops/upload.js'
import { ConfigError, ExitCode } from '../core/exit.js'
import { Redactor } from '../report/redact.js'
import { readHistory } from '../commands/release.js'
import { parseHistory, type HistoryEntry } from '../release/history.js'
import { closeAll, connectAll, primaryOf, runOn, type RunContext } from '../host/context.js'
import { StageError, errorMessage } from '../core/errors.js'
import { newContext, runLifecycle, type RunPlan, type RunRequest } from '../engine/lifecycle.js'
import type { RunResult } from '../pipeline/result.js'
import { preflightStage } from '../pipeline/stages.js'
import type { Stage } from '../pipeline/stage.js'
import { isBackupName, parseBackupName, type BackupName } from '../backup-engines/name.js'
import { downloadBackup } from '../backup/ops/download.js'
import { findBackup, listBackups, setKept, type BackupInfo } from '../backup/ops/list.js'
import { pruneBackups, type PruneResult } from '../backup/ops/prune.js'
import { planFor, type BackupResult } from '../backup/ops/shared.js'
import { verifyBackup } from '../backup/ops/verify.js'
import { backupNowStage, restoreStages, runnerBackupDir, type RestoreState } from '../pipeline/backup.js'

/** The backup commands of the CLI: `backup`, `backups list|verify|prune|download`, `restore`. */
export const BACKUP_COMMANDS = ['backup', 'backups', 'restore']

export const BACKUP_USAGE = `  backup [--keep]        take a verified backup now (takes the lock), then prune by retention;
                         --keep (or --protect): retention never deletes this one
  backups list           backups on the primary: size, age, encrypted, verified, release
  backups protect NAME   keep a backup out of retention; \`backups unprotect NAME\` undoes it
  backups verify NAME    check a backup against its checksums and read it back
  backups prune [--yes]  show what retention would delete; --yes deletes it (takes the lock)
  backups download NAME [--out DIR]  copy a backup here (default: the log dir), checksums checked
  backups upload PATH    put a downloaded copy back (its .sha256 file or dir), checked here and there;
                         then \`restore NAME --yes\`; the uploaded backup is protected from retention
  restore NAME --yes     back up the current state, then restore NAME (takes the lock)`

export interface BackupArgs {
  command: string
  sub?: string
  name?: string
  yes: boolean
  out?: string
  json: boolean
  /** `backup --keep` / `--protect`. */
  keep?: boolean
}

interface Output {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
}

/** Checks the arguments before anything is loaded or connected: bad input is exit 2. */
export function checkBackupArgs(args: BackupArgs): void {
  const { command, sub, name } = args
  if (command === 'backups') {
    if (!sub || !['list', 'verify', 'prune', 'download', 'upload', 'protect', 'unprotect'].includes(sub))
      throw new ConfigError(
        'backups: expected `backups list`, `backups verify NAME`, `backups prune`, `backups download NAME`, `backups upload PATH`, `backups protect NAME` or `backups unprotect NAME`'
      )
    if (sub === 'upload' && !name)
      throw new ConfigError(
        'backups upload: give the path of a downloaded backup (its .sha256 file, or its dir)'
      )
    if (['verify', 'download', 'protect', 'unprotect'].includes(sub) && !name)
      throw new ConfigError(`backups ${sub}: name the backup (see \`safe-deploy backups list\`)`)
  }
  if (command === 'restore') {
    if (!name) throw new ConfigError('restore: name the backup to restore (see `safe-deploy backups list`)')
  }
  if (args.keep && command !== 'backup')
    throw new ConfigError(
      `--keep (--protect) is for \`backup\`; to keep an existing backup: \`safe-deploy backups protect NAME\``
    )
  if (name !== undefined && !(command === 'backups' && sub === 'upload')) parseBackupName(name)
  if (command === 'restore' && !args.yes)
    throw new ConfigError(
      `restore ${name} replaces the current databases and files with the backup's (a safety backup of the current state is taken first); run again with --yes to do it`
    )
}

/**
 * Runs a backup command's stages after preflight through the one run lifecycle (src/engine/lifecycle.ts):
 * lock, log, verdict, the host log on the primary, the JSON report, the outputs.
 */
function runLocked(
  req: RunRequest,
  command: 'backup' | 'restore' | 'prune',
  stages: Stage[],
  more: Omit<RunPlan, 'stages'> = {}
): Promise<RunResult> {
  return runLifecycle(req, {
    command,
    intro: ctx =>
      `${command} of ${ctx.config.app} on ${req.loaded.hosts.find(h => h.primary)?.name ?? '?'} by ${ctx.actor.who}`,
    plan: () => ({
      stages: [preflightStage({ command, deploying: false }), ...stages],
      // only the primary is touched: its deploy.log says so; no history line (that is for releases)
      finishOn: 'primary',
      ...more
    })
  })
}

/** Connects (no lock, no log file) and runs `fn` on the primary. */
async function readOnly<T>(
  req: RunRequest,
  command: string,
  fn: (ctx: RunContext) => Promise<T>
): Promise<T> {
  const ctx = newContext(req, command, new Date(), false)
  try {
    await connectAll(ctx)
    return await fn(ctx)
  } finally {
    await closeAll(ctx)
  }
}

const size = (bytes: number) =>
  bytes >= 1024 ** 3
    ? `${(bytes / 1024 ** 3).toFixed(1)} GiB`
    : bytes >= 1024 ** 2
      ? `${(bytes / 1024 ** 2).toFixed(1)} MiB`
      : `${(bytes / 1024).toFixed(1)} KiB`

function age(created: Date, nowS: number): string {
  const s = Math.max(0, nowS - created.getTime() / 1000)
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400 * 2) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86400)}d`
}

/** What a backup is for, from history first (the deploy it preceded), else from its meta file. */
function purpose(b: BackupInfo, history: HistoryEntry[]): string {
  const deploy = history.find(h => h.type === 'deploy' && h.backup === b.name)
  if (deploy) return `before ${deploy.release} (${deploy.status})`
  return b.meta?.reason ?? ''
}

/** The FOR column: what it is for, and whether retention leaves it alone. */
function purposeText(b: BackupInfo, history: HistoryEntry[]): string {
  const what = purpose(b, history)
  return b.protected ? `${what ? `${what}; ` : ''}protected (--keep)` : what
}

function verifiedText(b: BackupInfo): string {
  if (!b.complete) return 'INCOMPLETE'
  return b.meta?.verified === 'stream' ? 'yes (before encryption)' : 'yes'
}

export interface ListedBackup {
  name: string
  created: string
  bytes: number
  files: string[]
  encrypted: boolean
  complete: boolean
  verified: string
  for: string
  /** Kept out of retention (NAME.keep). */
  protected: boolean
  /** Has a signature file (NAME.sig, backup.sign_key); `backups verify` checks it. */
  signed: boolean
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length))) ?? []
  return (
    rows
      .map(r =>
        r
          .map((c, i) => c.padEnd(widths[i] ?? 0))
          .join('  ')
          .trimEnd()
      )
      .join('\n') + '\n'
  )
}

/** `backup` (the CLI, and the Action in a scheduled workflow): a verified backup now, under the lock. */
export function backupNow(req: RunRequest, opts: { keep?: boolean } = {}): Promise<RunResult> {
  const out: { result?: BackupResult } = {}
  return runLocked(req, 'backup', [backupNowStage(out, { keep: opts.keep })], {
    backup: () => out.result,
    details: () => ({
      files: out.result?.files,
      protected: out.result ? !!opts.keep : undefined
    })
  })
}

/** `restore NAME --yes`: check it, take a safety backup, restore; undone when the restore fails. */
export function restoreNow(req: RunRequest, name: BackupName): Promise<RunResult> {
  const state: RestoreState = {}
  return runLocked(req, 'restore', restoreStages(name, state), {
    details: () => ({
      restored: state.restored?.restored,
      safetyBackup: state.safety?.name,
      leftTables: state.restored?.leftTables
    })
  })
}

/** `backups prune --yes`: delete what retention says, under the lock. */
export function pruneNow(req: RunRequest): Promise<RunResult> {
  const res: { result?: PruneResult } = {}
  return runLocked(
    req,
    'prune',
    [
      {
        name: 'prune',
        async run(ctx) {
          const s = primaryOf(ctx)
          res.result = await pruneBackups(ctx, s, planFor(ctx, s, 'prune'), { stage: 'prune', apply: true })
        }
      }
    ],
    { details: () => ({ ...res.result }) }
  )
}

/** `backup`, `backups ...`, `restore`: returns the exit code. Arguments were checked by checkBackupArgs. */
export async function runBackupCli(args: BackupArgs, req: RunRequest, io: Output): Promise<number> {
  const app = req.loaded.config.app
  const name: BackupName | undefined =
    args.name === undefined || args.sub === 'upload' ? undefined : parseBackupName(args.name, app)
  // the copy is checked on the runner before any host is contacted
  const local = args.sub === 'upload' ? readLocalBackup(args.name as string, app) : undefined
  const print = (v: unknown) => io.stdout.write(JSON.stringify(v, null, 2) + '\n')

  // runs that change the host: their result is printed by the run's subscribers (src/platform/cli.ts)
  if (args.command === 'backup') return (await backupNow(req, { keep: args.keep })).exitCode
  if (args.command === 'restore') return (await restoreNow(req, name as BackupName)).exitCode
  const sub = args.sub
  if (sub === 'prune' && args.yes) return (await pruneNow(req)).exitCode

  try {
    return await readOnly(req, `backups-${sub}`, async ctx => {
      const s = primaryOf(ctx)
      const plan = planFor(ctx, s, sub as string)
      if (sub === 'list') {
        const listing = await listBackups(ctx, s, plan, 'list')
        const history = parseHistory((await runOn(ctx, s, readHistory(s.layout), { stage: 'list' })).stdout)
        const now = listing.now ?? Date.now() / 1000
        const rows: ListedBackup[] = listing.backups.map(b => ({
          name: b.name,
          created: b.created.toISOString(),
          bytes: b.bytes,
          files: b.files.map(f => f.file),
          encrypted: b.encrypted,
          complete: b.complete,
          verified: verifiedText(b),
          for: purposeText(b, history),
          protected: b.protected,
          signed: b.hasSignature
        }))
        if (args.json) print({ host: s.host.name, dir: plan.dir, backups: rows, freeKb: listing.freeKb })
        else if (!rows.length) io.stdout.write(`no backups in ${plan.dir} on ${s.host.name}\n`)
        else
          io.stdout.write(
            table([
              ['NAME', 'SIZE', 'AGE', 'ENCRYPTED', 'VERIFIED', 'FOR'],
              ...listing.backups.map((b, i) => [
                b.name,
                size(b.bytes),
                age(b.created, now),
                b.encrypted ? 'yes' : 'no',
                rows[i]?.verified ?? '',
                rows[i]?.for ?? ''
              ])
            ])
          )
        return 0
      }
      if (sub === 'prune') {
        const p = await pruneBackups(ctx, s, plan, { stage: 'prune', apply: false })
        if (args.json) print({ ...p, dryRun: true })
        else {
          for (const k of p.keep)
            if (isBackupName(k)) io.stdout.write(`keep    ${k}  (${(p.reasons[k] ?? []).join(', ')})\n`)
          for (const d of p.prune) io.stdout.write(`delete  ${d}\n`)
          io.stdout.write(
            p.prune.length
              ? `dry run: nothing deleted; run \`safe-deploy backups prune --yes\` to delete ${p.prune.length} backup(s)\n`
              : 'nothing to delete\n'
          )
        }
        return 0
      }
      if (sub === 'protect' || sub === 'unprotect') {
        await setKept(ctx, s, plan, name as BackupName, sub === 'protect', sub)
        const said =
          sub === 'protect'
            ? `${name as string}: protected; retention will not delete it (undo: safe-deploy backups unprotect ${name as string})`
            : `${name as string}: no longer protected; retention applies to it again`
        if (args.json) print({ name, protected: sub === 'protect' })
        else io.stdout.write(`${said}\n`)
        return 0
      }
      if (sub === 'upload' && local) {
        const u = await uploadBackup(ctx, s, plan, local, 'upload')
        if (args.json) print({ ...u, ok: true })
        else
          io.stdout.write(
            `${u.name}: ${u.alreadyThere ? `already in ${u.dir} on ${u.host} with the same checksums; nothing sent` : `uploaded to ${u.dir} on ${u.host}`}; checksums match there${u.verify.checked.length ? `; read back: ${u.verify.checked.join(', ')}` : ''}; protected from retention (safe-deploy backups unprotect ${u.name})\nrestore it with: safe-deploy restore ${u.name} --yes\n`
          )
        return 0
      }
      const listing = await listBackups(ctx, s, plan, sub as string)
      const info = findBackup(listing, name as BackupName, s, sub as string)
      if (sub === 'verify') {
        const v = await verifyBackup(ctx, s, plan, info, 'verify')
        if (args.json) print({ ...v, ok: true })
        else {
          io.stdout.write(
            `${v.name}: ${v.signed ? 'signature and ' : ''}checksums match; ${v.checked.length ? `read back: ${v.checked.join(', ')}` : ''}\n`
          )
          if (v.unchecked.length)
            io.stdout.write(
              `NOT decrypted (no backup.encrypt.identity): ${v.unchecked.join(', ')}; checked by checksum and age header only\n`
            )
        }
        return 0
      }
      const dir = resolve(args.out ?? runnerBackupDir(ctx))
      const files = await downloadBackup(ctx, s, plan, info, dir, 'download')
      if (args.json) print({ name: info.name, files })
      else io.stdout.write(files.map(f => `${f}\n`).join(''))
      return 0
    })
  } catch (e) {
    const code = e instanceof StageError ? e.exitCode : ExitCode.failedNothingChanged
    io.stderr.write(
      `safe-deploy backups ${sub}: ${new Redactor(req.loaded.secrets).redact(errorMessage(e))}\n`
    )
    return code
  }
}
