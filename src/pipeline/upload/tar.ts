/**
 * The tar upload: source.dir is packed once on the runner, in-process (pack.ts: source.exclude left out,
 * modes from the tree, the git index on Windows and source.executable), and the archive is streamed over each
 * host's stdin into `tar -xzf -` in the new release directory.
 */
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterUnpack, unpackCommand } from '../../commands/release.js'
import { script } from '../../commands/command.js'
import { runRaw, type RunContext } from '../../host/context.js'
import { StageError, errorMessage } from '../../core/errors.js'
import type { UploadStrategy } from './index.js'
import { readSource, tarName, writeTarGz } from './pack.js'

/** Packs the source dir once on the runner, for streaming to every host. */
async function packSource(
  ctx: RunContext,
  dir: string,
  signal: AbortSignal
): Promise<{ file?: string; cleanup: () => void }> {
  const { exclude, executable = [] } = ctx.config.source
  if (ctx.dryRun) {
    const rules = [
      exclude.length ? `leaving out ${exclude.join(', ')}` : '',
      executable.length ? `mode 0755 for ${executable.join(', ')}` : ''
    ].filter(Boolean)
    ctx.dryRun.runner(
      `pack source.dir once for every host: tar.gz of ${dir}${rules.length ? ` (${rules.join('; ')})` : ''}`
    )
    return { cleanup: () => {} }
  }
  const tmp = mkdtempSync(join(tmpdir(), 'safe-deploy-'))
  const cleanup = () => rmSync(tmp, { recursive: true, force: true })
  const file = join(tmp, 'release.tar.gz')
  try {
    const m = readSource(dir, { exclude, executable }, { hash: false, gitDir: ctx.loaded.sourceDir })
    if (m.skipped.length)
      ctx.log.warn(
        `not uploaded (neither file, dir nor symlink): ${m.skipped.map(p => JSON.stringify(p)).join(', ')}`,
        'runner'
      )
    await writeTarGz(
      file,
      m.entries.map(entry => ({ name: tarName('./', entry), entry, src: dir })),
      signal
    )
  } catch (e) {
    cleanup()
    throw new StageError('deploy', `cannot pack ${dir} on the runner: ${errorMessage(e)}`, 'runner')
  }
  return { file, cleanup }
}

export function tarUpload(): UploadStrategy {
  let pack: { file?: string; cleanup: () => void } | undefined
  return {
    name: 'tar',
    async prepare(ctx, dir) {
      pack = await packSource(ctx, dir, ctx.signal)
      const size = pack.file ? statSync(pack.file).size : 0
      ctx.log.info(`packed ${dir} (${(size / 1024).toFixed(1)} KiB compressed)`, 'runner')
    },
    async send(ctx, s, release, then = []) {
      const file = pack?.file
      const command = then.length
        ? script(`${unpackCommand(s.layout, release)} || exit $?`, afterUnpack(then))
        : unpackCommand(s.layout, release)
      await runRaw(ctx, s, command, 'upload', {
        stage: 'deploy',
        parts: ['upload', ...then.map(t => t.label)],
        // a dry run shows the upload; the archive is not made nor streamed
        stdin: file ? createReadStream(file) : '(the tar.gz of source.dir)'
      })
    },
    finish() {
      pack?.cleanup()
      pack = undefined
    }
  }
}
