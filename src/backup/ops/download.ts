import { createHash } from 'node:crypto'
import { chmodSync, createWriteStream, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { runRaw, type HostSession, type RunContext } from '../../host/context.js'
import { StageError } from '../../core/errors.js'
import type { BackupPlan } from '../../backup-engines/plan.js'
import { keepFile, manifestFile, metaFile, signatureFile } from '../../backup-engines/name.js'
import { catCommand } from '../script.js'
import type { BackupInfo } from './list.js'
import { longTimeout } from './shared.js'

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
