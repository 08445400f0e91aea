import { hostname } from 'node:os'
import pkg from '../../../package.json' with { type: 'json' }
import { parseKeyValues } from '../../commands/release.js'
import { runOn, type HostSession, type RunContext } from '../../host/context.js'
import { StageError } from '../../core/errors.js'
import type { BackupPlan } from '../../backup-engines/plan.js'
import {
  backupTime,
  keepFile,
  manifestFile,
  newBackupName,
  signatureFile,
  type BackupName
} from '../../backup-engines/name.js'
import { backupScript, writeSignatureScript } from '../script.js'
import { signatureLine, fromHex } from '../sign.js'
import { probeHost, throwProblems } from './probe.js'
import {
  describeFailure,
  longTimeout,
  mib,
  planFor,
  stepWarnings,
  type BackupFile,
  type BackupMeta,
  type BackupResult
} from './shared.js'

export interface TakeBackupOptions {
  /** Stage name for errors and the log. */
  stage: string
  /** Why: `before deploy of <release>`, `manual`, `before restore of <name>`. */
  reason: string
  /** The release about to be deployed, when this is a deploy's backup. */
  release?: string
  now?: Date
  /** Keep it out of retention (`backup --keep`): publishes NAME.keep with it. */
  keep?: boolean
}

/**
 * Takes a backup on host `s`: checks tools and connections, then dumps, verifies, checksums and publishes
 * every artifact (script.ts backupScript). Throws a StageError naming the engine and the tool's stderr
 * when anything fails; nothing is published then.
 */
export async function takeBackup(
  ctx: RunContext,
  s: HostSession,
  opts: TakeBackupOptions
): Promise<BackupResult> {
  const t0 = performance.now()
  const plan = planFor(ctx, s, opts.stage)
  const probe = await probeHost(ctx, s, plan, { stage: opts.stage })
  throwProblems(opts.stage, s, 'backup', probe)
  const dbBytes = Object.values(probe.sizes).reduce<number>((a, b) => a + (b ?? 0), 0)
  if (probe.freeKb !== undefined && dbBytes > probe.freeKb * 1024)
    ctx.log.warn(
      `only ${mib(probe.freeKb * 1024)} free in ${plan.dir} for databases of ${mib(dbBytes)} (before compression)`,
      s.host.name
    )
  const encrypted = plan.recipients.length > 0
  const verified: BackupResult['verified'] = encrypted ? (plan.hasIdentity ? 'decrypted' : 'stream') : 'file'
  const start = opts.now ?? new Date()
  for (let bump = 0; bump < 30; bump++) {
    const name = newBackupName(plan.app, new Date(start.getTime() + bump * 1000))
    const meta: BackupMeta = {
      version: 1,
      app: plan.app,
      name,
      created: backupTime(name).toISOString(),
      host: s.host.name,
      reason: opts.reason,
      release: opts.release,
      current: s.current,
      by: `${ctx.actor.who}${ctx.actor.run ? ` (${ctx.actor.run})` : ''} from ${hostname()}`,
      databases: plan.targets.map(t => ({
        label: t.label,
        engine: t.engine,
        database: t.conn.database,
        path: t.path,
        container: t.container?.service
      })),
      files: plan.files,
      encrypted,
      recipients: plan.recipients,
      verified,
      tools: Object.fromEntries(
        Object.entries(probe.tools).map(([i, tl]) => [`db${i}`, `${tl.dump}, ${tl.client}`])
      ),
      safe_deploy: pkg.version
    }
    const keep = opts.keep ? `kept by ${meta.by} at ${meta.created} (backup --keep)` : undefined
    const cmd = backupScript({ plan, name, tools: probe.tools, meta, keep })
    const r = await runOn(ctx, s, cmd, { stage: opts.stage, allowFail: true, timeoutMs: longTimeout(ctx) })
    if (r.code === 17) continue
    if (r.code !== 0 || !parseKeyValues(r.stdout).get('DONE')) {
      throw new StageError(
        opts.stage,
        `backup failed on ${s.host.name}, nothing was published: ${describeFailure(cmd, r.stdout, r.stderr, r.code)}`,
        s.host.name
      )
    }
    for (const w of stepWarnings(cmd, r.stdout)) ctx.log.warn(w, s.host.name)
    const files = (parseKeyValues(r.stdout).get('FILE') ?? []).map(l => {
      const [bytes, file] = [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]
      return { file, bytes: Number(bytes) }
    })
    if (plan.signKey) files.push(await signBackup(ctx, s, plan, name, r.stdout, opts.stage))
    const main = cmd.artifacts[0]?.file ?? manifestFile(name)
    const result: BackupResult = {
      name,
      dir: plan.dir,
      path: `${plan.dir}/${main}`,
      host: s.host.name,
      files,
      bytes: files.reduce((a, f) => a + f.bytes, 0),
      encrypted,
      verified,
      durationS: Math.round((performance.now() - t0) / 100) / 10
    }
    const how = {
      file: 'verified',
      stream: 'verified before encryption',
      decrypted: 'verified, decrypted'
    }[verified]
    ctx.log.info(
      `Backup created: ${cmd.artifacts.map(a => `${a.file} (${mib(files.find(f => f.file === a.file)?.bytes ?? 0)})`).join(', ')}; ${how}; in ${plan.dir} (${result.durationS} s)${keep ? `; protected from retention (${keepFile(name)}; undo with \`safe-deploy backups unprotect ${name}\`)` : ''}`,
      s.host.name
    )
    return result
  }
  throw new StageError(opts.stage, `could not find a free backup name in ${plan.dir}`, s.host.name)
}

/**
 * Writes NAME.sig for a backup just published, from the manifest and meta bytes its script printed. A
 * failure here leaves a whole but unsigned backup, which verify and restore refuse while sign_key is set.
 */
async function signBackup(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  name: BackupName,
  stdout: string,
  stage: string
): Promise<BackupFile> {
  const kv = parseKeyValues(stdout)
  const manifest = fromHex(kv.get('SIGN_MANIFEST')?.[0])
  const meta = fromHex(kv.get('SIGN_META')?.[0])
  const sig = signatureFile(name)
  if (!manifest || !meta)
    throw new StageError(
      stage,
      `backup ${name} on ${s.host.name} was published but not signed: the host did not send back its manifest`,
      s.host.name
    )
  const line = signatureLine(plan.signKey as string, name, manifest, meta)
  const r = await runOn(ctx, s, writeSignatureScript(plan, name, line), { stage, allowFail: true })
  if (r.code !== 0 || !parseKeyValues(r.stdout).get('SIGNED'))
    throw new StageError(
      stage,
      `backup ${name} on ${s.host.name} was published but ${sig} could not be written (${parseKeyValues(r.stdout).get('FAIL')?.[0] ?? `exit ${r.code}`}); verify and restore refuse it while backup.sign_key is set`,
      s.host.name
    )
  ctx.log.info(`signed backup ${name} (${sig}, HMAC-SHA256 of its manifest and meta)`, s.host.name)
  return { file: sig, bytes: line.length + 1 }
}

/**
 * A safety backup of the current state before a step that changes the data (`restore`, a rollback's `down`):
 * a verified backup like any other (takeBackup), its reason `before <what>`, named in the log.
 */
export async function takeSafetyBackup(
  ctx: RunContext,
  s: HostSession,
  stage: string,
  what: string
): Promise<BackupResult> {
  const safety = await takeBackup(ctx, s, { stage, reason: `before ${what}` })
  ctx.log.info(`safety backup ${safety.name} taken before ${what}`, s.host.name)
  return safety
}
