import { createHash } from 'node:crypto'
import { parseKeyValues } from '../../commands/release.js'
import { runOn, type HostSession, type RunContext } from '../../host/context.js'
import { StageError } from '../../core/errors.js'
import type { BackupPlan } from '../../backup-engines/plan.js'
import { manifestFile, metaFile, signatureFile, type BackupName } from '../../backup-engines/name.js'
import { readSignedScript, verifyScript } from '../script.js'
import { fromHex, signatureMatches } from '../sign.js'
import type { BackupInfo } from './list.js'
import { describeFailure, longTimeout, type BackupMeta } from './shared.js'

export interface VerifyResult {
  name: BackupName
  /** Artifacts fully checked (decompressed, decrypted, read by their engine). */
  checked: string[]
  /** Encrypted artifacts checked by checksum and header only: no identity was configured. */
  unchecked: string[]
  /** Tables in each database artifact (PostgreSQL, MySQL). */
  tables: Record<string, string[]>
  /** With backup.sign_key: the signature matched, and this is the meta file it covers. */
  signed?: { meta?: Partial<BackupMeta> }
}

/**
 * Verifies a published backup: every file against its manifest (a flipped or missing byte fails), then
 * each artifact by its engine. Throws a StageError (exit 3) that says which file failed and how.
 */
export async function verifyBackup(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  info: BackupInfo,
  stage: string
): Promise<VerifyResult> {
  const artifacts = info.files.flatMap(f => (f.artifact ? [f.artifact] : []))
  if (!artifacts.length)
    throw new StageError(stage, `backup ${info.name} has no database dump or files archive`, s.host.name)
  const signed = plan.signKey ? await checkSignature(ctx, s, plan, info.name, stage) : undefined
  const cmd = verifyScript(plan, info.name, artifacts, { manifestSha256: signed?.manifestSha256 })
  const r = await runOn(ctx, s, cmd, { stage, allowFail: true, timeoutMs: longTimeout(ctx) })
  const kv = parseKeyValues(r.stdout)
  if (r.code !== 0 || !kv.get('DONE'))
    throw new StageError(
      stage,
      `backup ${info.name} failed verification on ${s.host.name}: ${describeFailure(cmd, r.stdout, r.stderr, r.code)}`,
      s.host.name
    )
  const listed = new Set((kv.get('MANIFEST') ?? []).map(l => l.replace(/^[0-9a-f]{64} [ *]/, '')))
  const uncovered = artifacts.filter(a => !listed.has(a.file)).map(a => a.file)
  if (uncovered.length)
    throw new StageError(
      stage,
      `backup ${info.name} on ${s.host.name}: ${uncovered.join(', ')} not listed in ${manifestFile(info.name)}; it cannot be trusted`,
      s.host.name
    )
  const tables: Record<string, string[]> = {}
  for (const l of kv.get('TABLE') ?? []) {
    const i = l.indexOf(' ')
    const file = l.slice(0, i)
    ;(tables[file] ??= []).push(l.slice(i + 1))
  }
  return {
    name: info.name,
    checked: kv.get('OK') ?? [],
    unchecked: kv.get('UNCHECKED') ?? [],
    tables,
    ...(signed ? { signed: { meta: signed.meta } } : {})
  }
}

/**
 * With backup.sign_key: checks NAME.sig against the manifest and meta as they are now. Returns the
 * manifest's sha256 (the verify script checks its copy is that one) and the signed meta.
 */
async function checkSignature(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  name: BackupName,
  stage: string
): Promise<{ manifestSha256: string; meta?: Partial<BackupMeta> }> {
  const r = await runOn(ctx, s, readSignedScript(plan, name), { stage, allowFail: true })
  const kv = parseKeyValues(r.stdout)
  const manifest = fromHex(kv.get('SIGN_MANIFEST')?.[0])
  if (r.code !== 0 || !manifest)
    throw new StageError(
      stage,
      `backup ${name} on ${s.host.name}: ${kv.get('FAIL')?.[0] ?? `cannot read ${manifestFile(name)} (exit ${r.code})`}`,
      s.host.name
    )
  const meta = fromHex(kv.get('SIGN_META')?.[0])
  const sig = kv.get('SIG')?.[0]
  const refuse = (why: string) =>
    new StageError(
      stage,
      `backup ${name} on ${s.host.name} is refused: ${why}. backup.sign_key is set, so only backups signed with that key are verified or restored (docs/backups.md, "Who can forge a backup")`,
      s.host.name
    )
  if (sig === undefined)
    throw refuse(
      `it has no signature (${signatureFile(name)}): it was made without backup.sign_key, or the signature was removed`
    )
  if (!meta) throw refuse(`${metaFile(name)} is missing, and the signature covers it`)
  if (!signatureMatches(plan.signKey as string, name, manifest, meta, sig))
    throw refuse(
      `its signature (${signatureFile(name)}) does not match its manifest and meta: the backup was changed or forged after it was made, or signed with another key`
    )
  let parsed: Partial<BackupMeta> | undefined
  try {
    parsed = JSON.parse(meta.toString('utf8')) as Partial<BackupMeta>
  } catch {
    parsed = undefined
  }
  ctx.log.info(`signature of backup ${name} checked (${signatureFile(name)})`, s.host.name)
  return { manifestSha256: createHash('sha256').update(manifest).digest('hex'), meta: parsed }
}
