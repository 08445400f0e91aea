import { ExitCode } from '../../core/exit.js'
import { parseKeyValues } from '../../commands/release.js'
import { runOn, type HostSession, type RunContext } from '../../host/context.js'
import { StageError } from '../../core/errors.js'
import { isRelativeSafe, type BackupPlan } from '../../backup-engines/plan.js'
import type { Artifact, BackupName } from '../../backup-engines/name.js'
import { restoreScript, targetFor } from '../script.js'
import { describeTarget, formatOf } from '../../backup-engines/index.js'
import { findBackup, listBackups, type BackupInfo } from './list.js'
import { probeHost, throwProblems } from './probe.js'
import { describeFailure, longTimeout, planFor, stepWarnings } from './shared.js'
import { verifyBackup, type VerifyResult } from './verify.js'

export interface RestoreOptions {
  stage: string
  /** Restore only the databases (a rollback of a migration), or everything in the backup (default). */
  only?: 'databases'
  /** Called once something live is about to change: the first artifact's restore starts. */
  onChange?: () => void
}

export interface RestoreResult {
  name: BackupName
  restored: string[]
  /** Tables the database has that the backup does not (created after it, e.g. by a migration). */
  leftTables: Record<string, string[]>
}

/**
 * Restores the artifacts of a verified backup over the live databases and files, one artifact at a
 * time. PostgreSQL restores in one transaction and SQLite through the backup API (each all or nothing);
 * MySQL and files are not atomic, which is why callers take a safety backup first.
 */
export async function restoreArtifacts(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  info: BackupInfo,
  verified: VerifyResult,
  opts: RestoreOptions
): Promise<RestoreResult> {
  const artifacts = info.files
    .flatMap(f => (f.artifact ? [f.artifact] : []))
    .filter(a => opts.only !== 'databases' || a.kind !== 'files')
  const unmatched = artifacts.filter(a => a.kind !== 'files' && !targetFor(plan, a))
  if (unmatched.length)
    throw new StageError(
      opts.stage,
      `no database in backup.databases matches ${unmatched.map(a => a.file).join(', ')} (the config changed since the backup?); restore it by hand (docs/backups.md)`,
      s.host.name,
      ExitCode.badInput
    )
  if (artifacts.some(a => a.encrypted) && !plan.hasIdentity)
    throw new StageError(
      opts.stage,
      `backup ${info.name} is encrypted: restoring it needs the age identity (backup.encrypt.identity: env:AGE_IDENTITY)`,
      s.host.name,
      ExitCode.badInput
    )
  for (const t of plan.targets)
    if (!artifacts.some(a => targetFor(plan, a) === t))
      ctx.log.warn(
        `backup ${info.name} has nothing for the ${describeTarget(t)}; it is left as it is`,
        s.host.name
      )
  const probe = artifacts.some(a => a.kind !== 'files')
    ? await probeHost(ctx, s, plan, { stage: opts.stage, needs: [] })
    : undefined
  if (probe) throwProblems(opts.stage, s, 'restore', probe)
  const restored: string[] = []
  const leftTables: Record<string, string[]> = {}
  for (const a of artifacts) {
    const t = targetFor(plan, a)
    // the paths this archive was made of (its meta file), rather than what the config lists today
    // (with sign_key, only the meta file the signature covers)
    const archived = plan.signKey ? verified.signed?.meta?.files : info.meta?.files
    const paths =
      Array.isArray(archived) && archived.every(p => typeof p === 'string' && isRelativeSafe(p))
        ? archived
        : plan.files
    const cmd = restoreScript(
      { ...plan, files: paths },
      s.layout.meta,
      a,
      t,
      t ? probe?.tools[t.index] : undefined
    )
    opts.onChange?.()
    ctx.log.info(
      `restoring ${a.file}${t ? ` into the ${describeTarget(t)}` : ` into ${plan.root}`}`,
      s.host.name
    )
    const r = await runOn(ctx, s, cmd, { stage: opts.stage, allowFail: true, timeoutMs: longTimeout(ctx) })
    const kv = parseKeyValues(r.stdout)
    if (r.code !== 0 || !kv.get('RESTORED'))
      throw new RestoreError(
        opts.stage,
        `restore of ${a.file} failed on ${s.host.name}: ${describeFailure(cmd, r.stdout, r.stderr, r.code)}`,
        s.host.name,
        restored,
        a
      )
    for (const w of stepWarnings(cmd, r.stdout)) ctx.log.warn(w, s.host.name)
    restored.push(a.file)
    const inBackup = verified.tables[a.file]
    const now = kv.get('DBTABLE')
    if (t && inBackup && now) {
      const had = new Set(inBackup)
      const left = now.filter(x => !had.has(x))
      if (left.length) {
        leftTables[a.file] = left
        ctx.log.warn(
          `the ${describeTarget(t)} has table(s) the backup does not: ${left.join(', ')}. They were left as they are (created after the backup, e.g. by a migration); drop them if the code you run expects them gone`,
          s.host.name
        )
      }
    }
    ctx.log.info(`restored ${a.file}`, s.host.name)
  }
  return { name: info.name, restored, leftTables }
}

/** A failed restore; `restored` lists the artifacts that were already put back before `failed`. */
export class RestoreError extends StageError {
  constructor(
    stage: string,
    message: string,
    host: string,
    readonly restored: string[],
    readonly failed: Artifact
  ) {
    super(stage, message, host)
    this.name = 'RestoreError'
  }
  /** Whether the live state may differ from before: an artifact was restored, or a non-atomic one failed. */
  get changed(): boolean {
    return this.restored.length > 0 || !formatOf(this.failed.kind).atomicRestore
  }
}

export interface RestoreBackupResult extends RestoreResult {
  verified: VerifyResult
}

/** A backup found whole and verified, ready for restoreArtifacts. */
export interface CheckedBackup {
  plan: BackupPlan
  info: BackupInfo
  verified: VerifyResult
}

/**
 * Finds backup `name` and verifies it; refuses (exit 2) one that cannot be fully checked (encrypted, no
 * identity). Nothing changes: the first step of every restore, before a safety backup is taken.
 */
export async function checkBackup(
  ctx: RunContext,
  s: HostSession,
  name: BackupName,
  stage: string
): Promise<CheckedBackup> {
  const plan = planFor(ctx, s, stage)
  const listing = await listBackups(ctx, s, plan, stage)
  const info = findBackup(listing, name, s, stage)
  const verified = await verifyBackup(ctx, s, plan, info, stage)
  if (verified.unchecked.length)
    throw new StageError(
      stage,
      `backup ${name} is encrypted: restoring it needs the age identity (backup.encrypt.identity: env:AGE_IDENTITY)`,
      s.host.name,
      ExitCode.badInput
    )
  ctx.log.info(`backup ${name} verified (${verified.checked.join(', ')})`, s.host.name)
  return { plan, info, verified }
}

/**
 * Verifies backup `name` and restores it, with no safety backup: for putting back a backup that holds
 * the state wanted (the pre-deploy backup after a failed migration). A restore that needs a safety
 * backup is two steps the orchestrator can undo: takeSafetyBackup, then restoreArtifacts, whose stage's
 * undo is restoreSafety (pipeline/backup.ts restoreStages, a rollback's database stage).
 */
export async function restoreBackup(
  ctx: RunContext,
  s: HostSession,
  name: BackupName,
  opts: RestoreOptions
): Promise<RestoreBackupResult> {
  const { plan, info, verified } = await checkBackup(ctx, s, name, opts.stage)
  return { ...(await restoreArtifacts(ctx, s, plan, info, verified, opts)), verified }
}

/** Restores a safety backup taken moments ago (verified first; no new safety backup). */
export async function restoreSafety(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  name: BackupName,
  stage: string,
  only?: 'databases'
): Promise<RestoreResult> {
  const listing = await listBackups(ctx, s, plan, stage)
  const info = findBackup(listing, name, s, stage)
  const verified = await verifyBackup(ctx, s, plan, info, stage)
  return restoreArtifacts(ctx, s, plan, info, verified, { stage, only })
}
