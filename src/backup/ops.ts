import { createHash } from 'node:crypto'
import { chmodSync, createWriteStream, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { hostname } from 'node:os'
import pkg from '../../package.json' with { type: 'json' }
import { ExitCode } from '../config/errors.js'
import { unresolvedDatabases } from '../config/load.js'
import type { Layout } from '../commands/layout.js'
import type { RemoteCommand } from '../commands/command.js'
import { listReleases, parseKeyValues, readHistory } from '../commands/release.js'
import { parseHistory, type HistoryEntry } from '../release/history.js'
import { primaryOf, runOn, runRaw, type HostSession, type RunContext } from '../pipeline/context.js'
import { StageError, errorMessage } from '../pipeline/errors.js'
import { backupConfigOf, isRelativeSafe, resolvePlan, type BackupPlan } from './plan.js'
import {
  appOf,
  backupTime,
  isBackupName,
  keepFile,
  manifestFile,
  metaFile,
  newBackupName,
  parseArtifactFile,
  signatureFile,
  type Artifact,
  type BackupName
} from './name.js'
import { selectRetention } from './retention.js'
import {
  backupScript,
  catCommand,
  keepScript,
  listScript,
  probeScript,
  pruneScript,
  readSignedScript,
  restoreScript,
  targetFor,
  verifyScript,
  writeSignatureScript,
  type BuiltCommand
} from './script.js'
import { fromHex, signatureLine, signatureMatches } from './sign.js'
import type { Target, Tools } from './engines/target.js'
import { describeTarget, engineOf, formatOf } from './engines/index.js'

/** Dumps and restores may take long; a hung one still ends (ssh.command_timeout if that is longer). */
const LONG_TIMEOUT_MS = 6 * 3600_000

function longTimeout(ctx: RunContext): number {
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
  const kv = kvLines(stdout)
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
function stepWarnings(cmd: BuiltCommand, stdout: string): string[] {
  return (kvLines(stdout).get('ERR') ?? []).map(l => {
    const i = l.indexOf(' ')
    return `${cmd.steps[l.slice(0, i)] ?? '?'}: ${l.slice(i + 1)}`
  })
}

export interface ProbeResult {
  tools: Record<number, Tools>
  /** Database size in bytes, per target index, when the server answered. */
  sizes: Record<number, number | undefined>
  /** What went wrong per target (missing tool, cannot connect, old client). */
  problems: { target?: Target; message: string }[]
  freeKb?: number
}

/** KEY=value lines (keys may hold digits: T0_TOOL) into lists per key. */
export function kvLines(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line)
    if (!m) continue
    out.set(m[1] as string, [...(out.get(m[1] as string) ?? []), m[2] as string])
  }
  return out
}

/** The lines of one probe target (`T0_SERVER=...`), the prefix taken off (`SERVER`). */
function targetLines(kv: Map<string, string[]>, prefix: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const [k, v] of kv) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), v)
  return out
}

/** Host programs a backup of this plan needs besides the database tools. */
export function neededTools(plan: BackupPlan): string[] {
  return [
    'sha256sum',
    ...(plan.targets.some(t => t.compress === 'gzip') || plan.files.length ? ['gzip'] : []),
    ...(plan.targets.some(t => t.compress === 'zstd') ? ['zstd'] : []),
    ...(plan.files.length ? ['tar'] : []),
    ...(plan.recipients.length ? ['age', 'mkfifo', 'tee'] : []),
    ...(plan.signKey ? ['od'] : [])
  ]
}

/** For `plan`: the scripts a deploy's backup stage sends to the primary (the default client names). */
export function backupPlanCommands(ctx: RunContext, layout: Layout): RemoteCommand[] {
  const b = backupConfigOf(ctx.config)
  if (!b) return []
  const waiting = unresolvedDatabases(ctx.loaded.unresolved)
  if (waiting.size) {
    // `plan` runs without the database's variables; a deploy would refuse to start without them
    const list = [...waiting.values()].flat()
    return [
      {
        label: `backup (not shown: ${list.map(u => `${u.key} needs ${u.variable}, which is not set`).join('; ')}; deploy refuses to start without it)`,
        script: ':'
      }
    ]
  }
  const plan = resolvePlan(ctx.config.app, b, layout, ctx.config.env)
  const name = newBackupName(plan.app, new Date())
  return [
    probeScript(plan, { needs: neededTools(plan) }),
    backupScript({ plan, name, meta: { app: plan.app, name, reason: 'before deploy of <release>' } })
  ]
}

/** Checks the tools and connects to each database; reports what is wrong in words a person can act on. */
export async function probeHost(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  opts: { stage: string; needs?: string[] }
): Promise<ProbeResult> {
  const needs = opts.needs ?? neededTools(plan)
  const r = await runOn(ctx, s, probeScript(plan, { needs }), { stage: opts.stage, allowFail: true })
  const kv = kvLines(r.stdout)
  const host = s.host.name
  const out: ProbeResult = { tools: {}, sizes: {}, problems: [] }
  const free = Number(kv.get('FREE_KB')?.[0])
  if (Number.isFinite(free)) out.freeKb = free
  for (const x of kv.get('MISSING') ?? []) {
    const pkg = { sha256sum: 'coreutils', mkfifo: 'coreutils', tee: 'coreutils', od: 'coreutils' }[x] ?? x
    out.problems.push({ message: `${x} not found on ${host}: install ${pkg}` })
  }
  for (const t of plan.targets) {
    const p = `T${t.index}_`
    const what = describeTarget(t)
    const where = t.container ? `in compose service ${t.container.service} on ${host}` : `on ${host}`
    if (t.container && kv.get(`${p}NODIR`)) {
      const dir = t.container.dir
      const key = `backup.databases[${t.index}].compose_dir`
      out.problems.push({
        target: t,
        message:
          dir === `${plan.root}/current`
            ? `no current release on ${host} yet: ${dir}, the compose file dir of compose service ${t.container.service} (${key} defaults to the current release), does not exist, so the ${what} cannot be reached; deploy once without this database in backup.databases (or with backup: false), or set ${key} to where the compose project is`
            : `the compose file dir ${dir} (${key}) of compose service ${t.container.service} does not exist on ${host}, so the ${what} cannot be reached`
      })
      continue
    }
    if (kv.get(`${p}NODOCKER`)) {
      out.problems.push({ target: t, message: `docker not found on ${host}, needed for the ${what}` })
      continue
    }
    const tools = new Map(
      (kv.get(`${p}TOOL`) ?? []).map(l => [l.split(' ')[0] as string, l.slice(l.indexOf(' ') + 1)])
    )
    const missing = (kv.get(`${p}MISSING`) ?? []).map(l => l.split(' ')[0] as string)
    const server = kv.get(`${p}SERVER`)?.[0]
    const error = (kv.get(`${p}ERROR`) ?? []).join('\n')
    engineOf(t.engine).readProbe(
      t,
      { kv: targetLines(kv, p), tools, missing, server, error, where, what },
      {
        problem: message => out.problems.push({ target: t, message }),
        size: bytes => (out.sizes[t.index] = bytes),
        tools: found => (out.tools[t.index] = found),
        warn: message => ctx.log.warn(message, host)
      }
    )
    if (!server && error && !missing.length)
      out.problems.push({ target: t, message: `cannot reach the ${what} ${where}: ${error}` })
  }
  return out
}

function throwProblems(stage: string, s: HostSession, what: string, probe: ProbeResult): void {
  if (!probe.problems.length) return
  throw new StageError(
    stage,
    `${what} failed on ${s.host.name}: ${probe.problems.map(p => p.message).join('; ')}`,
    s.host.name
  )
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

const mib = (bytes: number) =>
  bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`

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
    if (r.code !== 0 || !kvLines(r.stdout).get('DONE')) {
      throw new StageError(
        opts.stage,
        `backup failed on ${s.host.name}, nothing was published: ${describeFailure(cmd, r.stdout, r.stderr, r.code)}`,
        s.host.name
      )
    }
    for (const w of stepWarnings(cmd, r.stdout)) ctx.log.warn(w, s.host.name)
    const files = (kvLines(r.stdout).get('FILE') ?? []).map(l => {
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
  const kv = kvLines(stdout)
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
  if (r.code !== 0 || !kvLines(r.stdout).get('SIGNED'))
    throw new StageError(
      stage,
      `backup ${name} on ${s.host.name} was published but ${sig} could not be written (${kvLines(r.stdout).get('FAIL')?.[0] ?? `exit ${r.code}`}); verify and restore refuse it while backup.sign_key is set`,
      s.host.name
    )
  ctx.log.info(`signed backup ${name} (${sig}, HMAC-SHA256 of its manifest and meta)`, s.host.name)
  return { file: sig, bytes: line.length + 1 }
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
  const kv = kvLines(r.stdout)
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
  const kv = kvLines(r.stdout)
  const byName = new Map<string, BackupInfo>()
  for (const line of kv.get('FILE') ?? []) {
    const bytes = Number(line.slice(0, line.indexOf(' ')))
    const file = line.slice(line.indexOf(' ') + 1)
    const stem = /^(.*?_\d{8}_\d{6})\./.exec(file)?.[1]
    if (!stem || !isBackupName(stem) || appOf(stem) !== plan.app) continue
    const info = byName.get(stem) ?? {
      name: stem,
      created: backupTime(stem),
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
  const kv = kvLines(r.stdout)
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
    const kv = kvLines(r.stdout)
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

export interface RestoreBackupOptions extends RestoreOptions {
  /** Take a backup of the current state first (default true); restored automatically if the restore fails. */
  safetyBackup?: boolean
}

export interface RestoreBackupResult extends RestoreResult {
  verified: VerifyResult
  safety?: BackupResult
}

/**
 * For stages (a failed migration, a rollback) and the `restore` command: verifies backup `name`, takes a
 * safety backup of the current state (unless told not to), and restores. If the restore fails after
 * something changed, the safety backup is restored; the error then says whether that worked.
 */
export async function restoreBackup(
  ctx: RunContext,
  s: HostSession,
  name: BackupName,
  opts: RestoreBackupOptions
): Promise<RestoreBackupResult> {
  const plan = planFor(ctx, s, opts.stage)
  const listing = await listBackups(ctx, s, plan, opts.stage)
  const info = findBackup(listing, name, s, opts.stage)
  const verified = await verifyBackup(ctx, s, plan, info, opts.stage)
  if (verified.unchecked.length)
    throw new StageError(
      opts.stage,
      `backup ${name} is encrypted: restoring it needs the age identity (backup.encrypt.identity: env:AGE_IDENTITY)`,
      s.host.name,
      ExitCode.badInput
    )
  ctx.log.info(`backup ${name} verified (${verified.checked.join(', ')})`, s.host.name)
  const safety =
    opts.safetyBackup === false ? undefined : await takeSafetyBackup(ctx, s, opts.stage, `restore of ${name}`)
  try {
    return { ...(await restoreArtifacts(ctx, s, plan, info, verified, opts)), verified, safety }
  } catch (e) {
    if (!(e instanceof RestoreError) || !e.changed || !safety) throw e
    ctx.log.error(`${e.message}; putting back the safety backup ${safety.name}`, s.host.name)
    try {
      await restoreSafety(ctx, s, plan, safety.name, opts.stage, opts.only)
    } catch (again) {
      throw new StageError(
        opts.stage,
        `${e.message}. Putting back the safety backup ${safety.name} FAILED too: ${errorMessage(again)}. The database may be half restored: restore ${safety.name} by hand (docs/backups.md)`,
        s.host.name,
        ExitCode.rollbackFailed
      )
    }
    throw new StageError(
      opts.stage,
      `${e.message}. The safety backup ${safety.name} was restored: the data is as it was before`,
      s.host.name,
      ExitCode.rolledBack
    )
  }
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

/** Backups that kept releases need for their rollback: the backup taken before each one's deploy. */
export function protectedBackups(history: HistoryEntry[], keptReleases: string[]): string[] {
  const kept = new Set(keptReleases)
  return history
    .filter(h => h.type === 'deploy' && h.backup && kept.has(h.release))
    .map(h => h.backup as string)
}

export interface PruneResult {
  keep: string[]
  prune: string[]
  reasons: Record<string, string[]>
  /** Files (and leftover temp dirs) actually removed; empty for a dry run. */
  removed: string[]
  /** Leftover temp dirs that would be or were removed. */
  temps: string[]
}

/**
 * Applies the retention policy to complete backups: the newest, and those that kept releases need, are
 * never pruned. With `apply` false nothing is deleted (a dry run). Leftover temp dirs of interrupted runs
 * are removed only when we hold the lock and they are over a day old.
 */
export async function pruneBackups(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  opts: { stage: string; apply: boolean; protect?: string[] }
): Promise<PruneResult> {
  const listing = await listBackups(ctx, s, plan, opts.stage)
  const history = parseHistory((await runOn(ctx, s, readHistory(s.layout), { stage: opts.stage })).stdout)
  const releases = parseKeyValues((await runOn(ctx, s, listReleases(s.layout), { stage: opts.stage })).stdout)
  const kept = releases.get('RELEASE') ?? []
  const marked = listing.backups.filter(b => b.protected).map(b => b.name)
  const protect = [...protectedBackups(history, kept), ...marked, ...(opts.protect ?? [])]
  const complete = listing.backups.filter(b => b.complete)
  const sel = selectRetention(
    complete.map(b => b.name),
    plan.config.retention,
    protect
  )
  const pruneNames = new Set(sel.prune)
  const files = complete.filter(b => pruneNames.has(b.name)).flatMap(b => b.files.map(f => f.file))
  // incomplete sets older than the newest complete backup are leftovers of runs that died mid-publish
  const newest = complete.at(-1)?.created.getTime() ?? 0
  const broken = listing.backups.filter(b => !b.complete && !b.protected && b.created.getTime() < newest)
  files.push(...broken.flatMap(b => b.files.map(f => f.file)))
  // a verify (which takes no lock) may be using its temp dir right now: only day-old leftovers go
  const now = listing.now ?? Date.now() / 1000
  const temps = ctx.lock ? listing.temps.filter(t => now - t.mtime > 86_400).map(t => t.name) : []
  const result: PruneResult = {
    keep: sel.keep,
    prune: [...sel.prune, ...broken.map(b => b.name)],
    reasons: sel.reasons,
    removed: [],
    temps
  }
  if (!opts.apply || (!files.length && !temps.length)) return result
  const r = await runOn(ctx, s, pruneScript(plan, files, temps), { stage: opts.stage })
  result.removed = kvLines(r.stdout).get('REMOVED') ?? []
  if (result.prune.length)
    ctx.log.info(
      `pruned ${result.prune.length} backup(s) by retention: ${result.prune.join(', ')}`,
      s.host.name
    )
  return result
}

/**
 * Copies a published backup to `toDir` on the runner, streaming each file, and checks every byte against
 * the manifest. Files arrive as `<file>.partial` and are renamed when their checksum matches (mode 0600).
 */
export async function downloadBackup(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  info: BackupInfo,
  toDir: string,
  stage: string
): Promise<string[]> {
  mkdirSync(toDir, { recursive: true, mode: 0o700 })
  const manifestName = manifestFile(info.name)
  const manifest = (await runRaw(ctx, s, catCommand(plan, manifestName), `read ${manifestName}`, { stage }))
    .stdout
  const sums = new Map<string, string>()
  for (const line of manifest.split('\n')) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line)
    if (m) sums.set(m[2] as string, m[1] as string)
  }
  const out: string[] = []
  // the .keep marker is a setting of the backup on this host, not part of it
  const wanted = info.files.map(f => f.file).filter(f => f !== manifestName && f !== keepFile(info.name))
  for (const file of wanted) {
    const dest = join(toDir, file)
    const partial = `${dest}.partial`
    const hash = createHash('sha256')
    const file$ = createWriteStream(partial, { mode: 0o600 })
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        hash.update(chunk)
        if (file$.write(chunk)) done()
        else file$.once('drain', () => done())
      }
    })
    let code: number
    try {
      code = (
        await s.t.exec(catCommand(plan, file), {
          stdoutSink: sink,
          timeoutMs: longTimeout(ctx),
          signal: ctx.signal
        })
      ).code
    } finally {
      await new Promise<void>(resolve => sink.end(() => file$.end(resolve)))
    }
    const got = hash.digest('hex')
    const want = sums.get(file)
    if (code !== 0 || (want && got !== want)) {
      rmSync(partial, { force: true })
      throw new StageError(
        stage,
        code !== 0
          ? `download of ${file} from ${s.host.name} failed (exit ${code})`
          : `download of ${file} from ${s.host.name}: sha256 ${got} does not match the manifest (${want}); the copy was removed`,
        s.host.name
      )
    }
    if (!want && file !== metaFile(info.name) && file !== signatureFile(info.name)) {
      rmSync(partial, { force: true })
      throw new StageError(stage, `${file} is not in ${manifestName}; not downloaded`, s.host.name)
    }
    renameSync(partial, dest)
    chmodSync(dest, 0o600)
    out.push(dest)
  }
  const manifestPath = join(toDir, manifestName)
  writeFileSync(manifestPath, manifest, { mode: 0o600 })
  out.push(manifestPath)
  ctx.log.info(`downloaded ${info.name} to ${toDir} (checksums match)`, s.host.name)
  return out
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
  const kv = kvLines(r.stdout)
  if (r.code !== 0 || !kv.get('KEPT'))
    throw new StageError(
      stage,
      `could not ${keep ? 'protect' : 'unprotect'} backup ${name} on ${s.host.name}: ${kv.get('FAIL')?.[0] ?? `exit ${r.code}`}`,
      s.host.name
    )
}

export interface DatabaseSize {
  label: string
  engine: string
  bytes?: number
  error?: string
}

/** For `status`: the size of each configured database on the primary (never throws). */
export async function databaseSizes(ctx: RunContext): Promise<DatabaseSize[]> {
  const b = backupConfigOf(ctx.config)
  if (!b || !b.databases.length) return []
  const s = primaryOf(ctx)
  const full = resolvePlan(ctx.config.app, b, s.layout, ctx.config.env)
  // a database whose URL or password variable is not set is not probed: status runs without it
  const waiting = unresolvedDatabases(ctx.loaded.unresolved)
  const notSet = full.targets
    .filter(t => waiting.has(t.index))
    .map(t => ({
      label: t.label,
      engine: t.engine,
      error: `not checked: ${(waiting.get(t.index) ?? []).map(u => `${u.variable} is not set (${u.key})`).join(', ')}`
    }))
  const plan = { ...full, targets: full.targets.filter(t => !waiting.has(t.index)) }
  if (!plan.targets.length) return notSet
  try {
    const probe = await probeHost(ctx, s, plan, { stage: 'status', needs: [] })
    return [
      ...notSet,
      ...plan.targets.map(t => ({
        label: t.label,
        engine: t.engine,
        bytes: probe.sizes[t.index],
        error: probe.problems.find(p => p.target === t)?.message
      }))
    ]
  } catch (e) {
    return [
      ...notSet,
      ...plan.targets.map(t => ({ label: t.label, engine: t.engine, error: errorMessage(e) }))
    ]
  }
}
