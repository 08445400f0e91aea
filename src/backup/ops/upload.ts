/**
 * `backups upload PATH`: puts a backup copied off the server earlier (`backups download`, a CI artifact) back
 * into the backup dir, so that `restore NAME` can use it. Every file is checked against the copy's manifest on
 * the runner before anything is sent; on the host the files arrive as `.partial` and are renamed only when
 * all arrived, the manifest last (a backup without its manifest is incomplete to every other command); then
 * the host checks them again (`backups verify`). An upload only adds files: it never replaces a backup.
 */
import { createHash } from 'node:crypto'
import { createReadStream, existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { sh } from '../../commands/quote.js'
import { runRaw, type HostSession, type RunContext } from '../../host/context.js'
import { ConfigError, ExitCode } from '../../core/exit.js'
import { StageError } from '../../core/errors.js'
import type { BackupPlan } from '../../backup-engines/plan.js'
import {
  manifestFile,
  metaFile,
  parseBackupFileName,
  signatureFile,
  type BackupName
} from '../../backup-engines/name.js'
import { findBackup, listBackups, setKept } from './list.js'
import { verifyBackup, type VerifyResult } from './verify.js'
import { longTimeout } from './shared.js'

/** A backup copy on the runner: its name, dir and the files its manifest lists (with their sha256). */
export interface LocalBackup {
  name: BackupName
  dir: string
  /** Manifest entries: file -> sha256. */
  sums: Map<string, string>
  /** Every file to send: the listed ones, the meta file and signature when present, the manifest last. */
  files: string[]
}

const sha256File = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex')

/**
 * Finds the backup a path names (its manifest `NAME.sha256`, any of its files, or a dir holding one backup of
 * `app`) and checks every file against the manifest. Bad input (exit 2) before any host is contacted.
 */
export function readLocalBackup(path: string, app: string): LocalBackup {
  if (!existsSync(path)) throw new ConfigError(`backups upload: ${path} does not exist`)
  let dir: string
  let name: BackupName
  if (statSync(path).isDirectory()) {
    dir = path
    const names = [
      ...new Set(
        readdirSync(dir)
          .filter(f => f.endsWith('.sha256'))
          .map(f => parseBackupFileName(f))
          .filter(p => p && p.app === app)
          .map(p => p?.stem as BackupName)
      )
    ]
    if (names.length !== 1)
      throw new ConfigError(
        `backups upload: ${dir} holds ${names.length ? `${names.length} backups of ${app} (${names.join(', ')}); name one's .sha256 file` : `no backup manifest (${app}_YYYYMMDD_HHMMSS.sha256)`}`
      )
    name = names[0] as BackupName
  } else {
    dir = dirname(path)
    const parsed = parseBackupFileName(basename(path))
    if (!parsed)
      throw new ConfigError(`backups upload: ${basename(path)} is not a file of a safe-deploy backup`)
    if (parsed.app !== app)
      throw new ConfigError(`backups upload: ${parsed.stem} is a backup of ${parsed.app}, not of ${app}`)
    name = parsed.stem
  }
  const manifest = join(dir, manifestFile(name))
  if (!existsSync(manifest))
    throw new ConfigError(
      `backups upload: ${manifestFile(name)} is missing in ${dir}: without it nothing can be checked`
    )
  const sums = new Map<string, string>()
  for (const line of readFileSync(manifest, 'utf8').split('\n')) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line)
    if (m) sums.set(m[2] as string, m[1] as string)
  }
  if (!sums.size) throw new ConfigError(`backups upload: ${manifest} lists no files`)
  const problems: string[] = []
  for (const [file, want] of sums) {
    // a manifest entry is a plain file name of this backup: never a path
    if (file.includes('/') || parseBackupFileName(file)?.stem !== name) {
      problems.push(`${file}: not a file of ${name}`)
      continue
    }
    const full = join(dir, file)
    if (!existsSync(full)) problems.push(`${file}: missing`)
    else if (sha256File(full) !== want) problems.push(`${file}: sha256 does not match the manifest`)
  }
  if (problems.length)
    throw new ConfigError(
      `backups upload: the copy of ${name} in ${dir} is not whole; nothing was sent:\n  - ${problems.join('\n  - ')}`
    )
  const extra = [metaFile(name), signatureFile(name)].filter(f => !sums.has(f) && existsSync(join(dir, f)))
  return { name, dir, sums, files: [...sums.keys(), ...extra, manifestFile(name)] }
}

export interface UploadResult {
  name: BackupName
  host: string
  dir: string
  /** The backup was already on the host with the same manifest: nothing was sent. */
  alreadyThere: boolean
  verify: VerifyResult
}

/** Sends a checked local copy to the host's backup dir, verifies it there and protects it from retention. */
export async function uploadBackup(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  local: LocalBackup,
  stage: string
): Promise<UploadResult> {
  const before = await listBackups(ctx, s, plan, stage)
  const there = before.backups.find(b => b.name === local.name)
  let alreadyThere = false
  if (there) {
    const manifest = (
      await runRaw(ctx, s, `cat ${sh(`${plan.dir}/${manifestFile(local.name)}`)}`, 'read the manifest', {
        stage,
        allowFail: true
      })
    ).stdout
    if (there.complete && manifest === readFileSync(join(local.dir, manifestFile(local.name)), 'utf8'))
      alreadyThere = true
    else
      throw new StageError(
        stage,
        `${local.name} already exists in ${plan.dir} on ${s.host.name} with other contents; an upload never replaces a backup (remove it there first if it is broken)`,
        s.host.name,
        ExitCode.badInput
      )
  }
  if (!alreadyThere) {
    const partial = (f: string) => `${plan.dir}/${f}.partial`
    try {
      for (const f of local.files) {
        await runRaw(
          ctx,
          s,
          `umask 077 && mkdir -p ${sh(plan.dir)} && cat > ${sh(partial(f))}`,
          `upload ${f}`,
          {
            stage,
            stdin: createReadStream(join(local.dir, f)),
            timeoutMs: longTimeout(ctx)
          }
        )
      }
      // all arrived: into place, the manifest last
      const moves = local.files.map(f => `mv -f -- ${sh(partial(f))} ${sh(`${plan.dir}/${f}`)}`)
      await runRaw(ctx, s, ['set -e', ...moves].join('\n'), `publish ${local.name}`, { stage })
    } catch (e) {
      const rm = local.files.map(f => sh(partial(f))).join(' ')
      await runRaw(ctx, s, `rm -f -- ${rm}`, 'remove the partial upload', { stage, allowFail: true }).catch(
        () => undefined
      )
      throw e
    }
  }
  const after = await listBackups(ctx, s, plan, stage)
  const info = findBackup(after, local.name, s, stage)
  const verify = await verifyBackup(ctx, s, plan, info, stage)
  // an old backup is the first retention would delete: an uploaded one stays until a person unprotects it
  if (!info.protected) await setKept(ctx, s, plan, local.name, true, stage)
  return { name: local.name, host: s.host.name, dir: plan.dir, alreadyThere, verify }
}
