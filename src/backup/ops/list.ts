import { parseKeyValues } from '../../commands/release.js'
import { runOn, type HostSession, type RunContext } from '../../host/context.js'
import { StageError } from '../../core/errors.js'
import type { BackupPlan } from '../../backup-engines/plan.js'
import {
  keepFile,
  manifestFile,
  parseArtifactFile,
  parseBackupFileName,
  signatureFile,
  type Artifact,
  type BackupName
} from '../../backup-engines/name.js'
import { keepScript, listScript } from '../script.js'
import type { BackupFile, BackupMeta } from './shared.js'

export interface BackupInfo {
  name: BackupName
  created: Date
  files: (BackupFile & { artifact?: Artifact })[]
  bytes: number
  /** Its manifest exists: it was verified and published whole. */
  complete: boolean
  encrypted: boolean
  /** NAME.keep exists: retention never prunes it (`backup --keep`, `backups protect`). */
  protected: boolean
  /** NAME.sig exists (whether it matches is for verify to say). */
  hasSignature: boolean
  meta?: Partial<BackupMeta>
}

export interface BackupListing {
  backups: BackupInfo[]
  /** Leftovers of interrupted runs of this app: .partial.<app>_* and .verify.<app>.* dirs, mtime in epoch s. */
  temps: { name: string; mtime: number }[]
  freeKb?: number
  /** The host's clock (epoch s). */
  now?: number
}

/** Reads the backup dir: every backup of this app, newest last. */
export async function listBackups(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  stage: string
): Promise<BackupListing> {
  const r = await runOn(ctx, s, listScript(plan), { stage })
  const kv = parseKeyValues(r.stdout)
  const byName = new Map<string, BackupInfo>()
  for (const line of kv.get('FILE') ?? []) {
    const bytes = Number(line.slice(0, line.indexOf(' ')))
    const file = line.slice(line.indexOf(' ') + 1)
    const parsed = parseBackupFileName(file)
    if (!parsed || !parsed.rest || parsed.app !== plan.app) continue
    const stem = parsed.stem
    const info = byName.get(stem) ?? {
      name: stem,
      created: parsed.time,
      files: [],
      bytes: 0,
      complete: false,
      encrypted: false,
      protected: false,
      hasSignature: false
    }
    const artifact = parseArtifactFile(stem, file)
    info.files.push({ file, bytes, artifact })
    info.bytes += bytes
    if (file === manifestFile(stem)) info.complete = true
    if (file === keepFile(stem)) info.protected = true
    if (file === signatureFile(stem)) info.hasSignature = true
    if (artifact?.encrypted) info.encrypted = true
    byName.set(stem, info)
  }
  for (const line of kv.get('META') ?? []) {
    try {
      const m = JSON.parse(line) as Partial<BackupMeta>
      const info = m.name ? byName.get(m.name) : undefined
      if (info) info.meta = m
    } catch {
      /* a damaged meta file only loses the extra details */
    }
  }
  const temps = (kv.get('TEMP') ?? []).map(l => ({
    mtime: Number(l.slice(0, l.indexOf(' '))),
    name: l.slice(l.indexOf(' ') + 1)
  }))
  const free = Number(kv.get('FREE_KB')?.[0])
  const now = Number(kv.get('NOW')?.[0])
  return {
    backups: [...byName.values()].sort((a, b) => a.created.getTime() - b.created.getTime()),
    temps,
    freeKb: Number.isFinite(free) ? free : undefined,
    now: Number.isFinite(now) ? now : undefined
  }
}

/** The backup `name`, published and whole; throws (exit 3) naming what is there instead. */
export function findBackup(
  listing: BackupListing,
  name: BackupName,
  s: HostSession,
  stage: string
): BackupInfo {
  const info = listing.backups.find(b => b.name === name)
  if (!info) {
    const newest = listing.backups
      .filter(b => b.complete)
      .slice(-3)
      .map(b => b.name)
    throw new StageError(
      stage,
      `backup ${name} does not exist on ${s.host.name}${newest.length ? ` (newest: ${newest.join(', ')})` : ' (there are no backups)'}; see \`safe-deploy backups list\``,
      s.host.name
    )
  }
  if (!info.complete)
    throw new StageError(
      stage,
      `backup ${name} on ${s.host.name} has no ${manifestFile(name)}: it was never published whole (an interrupted run) and cannot be trusted`,
      s.host.name
    )
  return info
}

/** `backups protect|unprotect NAME`: adds or removes the NAME.keep marker of a published backup. */
export async function setKept(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  name: BackupName,
  keep: boolean,
  stage: string
): Promise<void> {
  const why = keep ? `kept by ${ctx.actor.who} at ${new Date().toISOString()} (backups protect)` : undefined
  const r = await runOn(ctx, s, keepScript(plan, name, why), { stage, allowFail: true })
  const kv = parseKeyValues(r.stdout)
  if (r.code !== 0 || !kv.get('KEPT'))
    throw new StageError(
      stage,
      `could not ${keep ? 'protect' : 'unprotect'} backup ${name} on ${s.host.name}: ${kv.get('FAIL')?.[0] ?? `exit ${r.code}`}`,
      s.host.name
    )
}
