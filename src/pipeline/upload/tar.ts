/**
 * The tar upload: source.dir is packed once on the runner (GNU or BSD tar, source.exclude left out) and the
 * archive is streamed over each host's stdin into `tar -xzf -` in the new release directory.
 */
import { spawn } from 'node:child_process'
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sh } from '../../commands/quote.js'
import { afterUnpack, unpackCommand } from '../../commands/release.js'
import { script } from '../../commands/command.js'
import { runRaw, type RunContext } from '../../host/context.js'
import { StageError } from '../../core/errors.js'
import type { UploadStrategy } from './index.js'

/** Packs the source dir once on the runner, for streaming to every host. */
async function packSource(
  ctx: RunContext,
  dir: string,
  exclude: string[],
  signal: AbortSignal
): Promise<{ file?: string; cleanup: () => void }> {
  const tarArgs = (file: string) => ['-czf', file, ...exclude.map(e => `--exclude=${e}`), '-C', dir, '.']
  if (ctx.dryRun) {
    ctx.dryRun.runner(
      'pack source.dir once for every host',
      ['tar', ...tarArgs('release.tar.gz')].map(sh).join(' ')
    )
    return { cleanup: () => {} }
  }
  const tmp = mkdtempSync(join(tmpdir(), 'safe-deploy-'))
  const file = join(tmp, 'release.tar.gz')
  const args = tarArgs(file)
  await new Promise<void>((resolve, reject) => {
    const child = spawn('tar', args, { stdio: ['ignore', 'ignore', 'pipe'], signal })
    let stderr = ''
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.on('error', e =>
      reject(new StageError('deploy', `cannot run tar on the runner: ${e.message}`, 'runner'))
    )
    child.on('close', code =>
      code === 0
        ? resolve()
        : reject(
            new StageError('deploy', `tar failed on the runner (exit ${code}): ${stderr.trim()}`, 'runner')
          )
    )
  })
  return { file, cleanup: () => rmSync(tmp, { recursive: true, force: true }) }
}

export function tarUpload(): UploadStrategy {
  let pack: { file?: string; cleanup: () => void } | undefined
  return {
    name: 'tar',
    async prepare(ctx, dir) {
      pack = await packSource(ctx, dir, ctx.config.source.exclude, ctx.signal)
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
