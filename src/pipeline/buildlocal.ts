/**
 * The runner-side build (`stages.build_local`): after the test stage and before packing, source.dir is copied
 * to a staging dir on the runner (source.exclude left out), the cache (`cache:`) is restored into it, the
 * command runs there, and what it leaves is what the upload packs. The user's tree is never written to; a
 * fleet builds once instead of on every host. Nothing on a server changes (effect none).
 */
import { createHash } from 'node:crypto'
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  type Stats
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalTransport } from '../transport/local.js'
import { StageError, errorMessage } from '../core/errors.js'
import type { RunContext } from '../host/context.js'
import type { ProductStage, StageName } from './stage.js'
import { buildManifest, type ManifestEntry } from './upload/manifest.js'

/**
 * Where `cache:` paths are kept between runs: the CLI's is a local dir (src/pipeline/cache.ts), the Action's
 * the GitHub cache service (src/platform/cache.ts). Paths are relative to `dir`, the staging copy.
 */
export interface BuildCache {
  /** What the log calls it: `the local cache (~/.cache/safe-deploy)`. */
  readonly name: string
  /** Puts the paths saved under `key` back into `dir`; false when there is no entry for `key`. */
  restore(key: string, paths: string[], dir: string): Promise<boolean>
  /** Saves `paths` of `dir` under `key` (`.env*` files left out). */
  save(key: string, paths: string[], dir: string): Promise<void>
}

/**
 * The cache key: `safe-deploy-<app>-<sha256 of the key files>` (each file's path and bytes, in order), or
 * undefined with the files that are missing.
 */
export function cacheKey(
  app: string,
  sourceDir: string,
  keyFiles: string[]
): { key: string } | { missing: string[] } {
  const missing = keyFiles.filter(f => !existsSync(join(sourceDir, f)))
  if (missing.length) return { missing }
  const hash = createHash('sha256')
  for (const f of keyFiles) {
    hash.update(`${f}\0`)
    hash.update(readFileSync(join(sourceDir, f)))
    hash.update('\0')
  }
  return { key: `safe-deploy-${app}-${hash.digest('hex')}` }
}

/**
 * A command on the runner, its output in the log; a non-zero exit, an interrupt or a timeout is a StageError
 * of `stage` that names the command.
 */
export async function runOnRunner(
  ctx: RunContext,
  stage: StageName,
  what: string,
  command: string,
  cwd: string
): Promise<void> {
  // the user's command, with the platform's shell (cmd.exe on Windows), in cwd
  const local = new LocalTransport('runner', { shell: 'platform', cwd })
  ctx.log.info(`$ ${command}`, 'runner')
  const out = ctx.log.lineWriter('runner')
  const err = ctx.log.lineWriter('runner')
  let code: number
  try {
    const r = await local.exec(command, {
      signal: ctx.signal,
      onStdout: out.push,
      onStderr: err.push,
      timeoutMs: ctx.config.ssh.command_timeout
    })
    code = r.code
  } catch (e) {
    // interrupted or timed out: say where, like every other stage does
    throw new StageError(stage, `${what} \`${command}\` on the runner: ${errorMessage(e)}`, 'runner')
  } finally {
    out.flush()
    err.flush()
  }
  if (code !== 0)
    throw new StageError(stage, `${what} \`${command}\` failed on the runner (exit ${code})`, 'runner')
}

/**
 * Copies `paths` of `from` (default: all of it) into the dir `to`, leaving out `exclude` (tar patterns, as the
 * upload does), in-process: no `tar` or `sh` on the runner (a Windows laptop has neither). Each file, dir and
 * symlink keeps its mode and mtime, as `tar -c | tar -x` kept them; dirs get theirs last, so a read-only dir
 * still receives its files. Throws a plain Error saying why.
 */
export async function copyTree(
  from: string,
  to: string,
  exclude: string[],
  opts: { paths?: string[]; signal?: AbortSignal } = {}
): Promise<void> {
  const wanted = opts.paths?.map(p => p.replace(/^\.\/+/, '').replace(/\/+$/, '') || '.')
  // an entry is copied when it is one of `paths`, inside one, or a dir on the way to one
  const copied = (p: string) =>
    !wanted || wanted.some(w => w === '.' || p === w || p.startsWith(`${w}/`) || w.startsWith(`${p}/`))
  let entries: ManifestEntry[]
  try {
    entries = buildManifest(from, exclude, [], { hash: false }).entries.filter(
      e => e.path !== '.' && copied(e.path)
    )
  } catch (e) {
    throw new Error(`copying ${from} to ${to} failed: ${errorMessage(e)}`)
  }
  const dirs: ManifestEntry[] = []
  try {
    mkdirSync(to, { recursive: true })
    let n = 0
    for (const e of entries) {
      if (++n % 200 === 0) {
        // let a SIGINT reach the run between chunks of a large tree
        await new Promise(r => setImmediate(r))
        if (opts.signal?.aborted) throw new Error('interrupted')
      }
      const src = join(from, e.path)
      const dst = join(to, e.path)
      const there = lstatOrUndefined(dst)
      if (e.type === 'dir') {
        if (there && !there.isDirectory()) rmSync(dst, { force: true })
        if (!there || !there.isDirectory()) mkdirSync(dst, { mode: 0o700 })
        chmodSync(dst, 0o700)
        dirs.push(e)
        continue
      }
      if (there) rmSync(dst, { recursive: true, force: true })
      if (e.type === 'link') {
        symlinkSync(e.target as string, dst)
        continue
      }
      copyFileSync(src, dst)
      chmodSync(dst, e.mode)
      if (e.mtime !== undefined) utimesSync(dst, e.mtime / 1000, e.mtime / 1000)
    }
    // deepest first: setting a dir's mtime before its children are written would be undone by them
    for (const d of dirs.reverse()) {
      chmodSync(join(to, d.path), d.mode)
      if (d.mtime !== undefined) utimesSync(join(to, d.path), d.mtime / 1000, d.mtime / 1000)
    }
  } catch (e) {
    throw new Error(`copying ${from} to ${to} failed: ${errorMessage(e)}`)
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path)
  } catch {
    return undefined
  }
}

/** The build-local stage and the dir the upload packs (the staging copy once built, else source.dir). */
export function buildLocal(cache?: BuildCache): {
  stage: ProductStage
  dir: (ctx: RunContext) => string
  cleanup: () => void
} {
  let staging: string | undefined
  let built = false
  return {
    dir: ctx => (built ? (staging ?? '<staging>') : ctx.loaded.sourceDir),
    cleanup: () => {
      if (staging) rmSync(staging, { recursive: true, force: true })
      staging = undefined
    },
    stage: {
      name: 'build-local',
      scope: 'runner',
      effect: 'none',
      async run(ctx) {
        const command = ctx.config.stages.build_local
        if (!command) {
          ctx.log.info('no stages.build_local configured; skipped')
          return
        }
        const { sourceDir } = ctx.loaded
        const paths = ctx.config.cache?.paths ?? []
        const keyFiles = ctx.config.cache?.key_files ?? []
        if (ctx.dryRun) {
          ctx.dryRun.runner(
            `copy ${sourceDir} to a staging dir on the runner (source.exclude left out; in-process, modes and mtimes kept)`
          )
          if (ctx.config.cache)
            ctx.dryRun.runner(
              `restore ${paths.join(', ')} from the cache (key: sha256 of ${keyFiles.join(', ')})`
            )
          ctx.dryRun.runner(
            'build-local (in the staging dir; a failure stops the deploy)',
            `cd <staging> && ${command}`
          )
          if (ctx.config.cache) ctx.dryRun.runner(`save ${paths.join(', ')} to the cache`)
          built = true
          return
        }
        staging = mkdtempSync(join(tmpdir(), 'safe-deploy-build-'))
        try {
          await copyTree(sourceDir, staging, ctx.config.source.exclude, { signal: ctx.signal })
        } catch (e) {
          throw new StageError('build-local', `staging copy: ${errorMessage(e)}`, 'runner')
        }
        ctx.log.info(`copied ${sourceDir} to the staging dir ${staging}`, 'runner')
        let key: string | undefined
        let hit = false
        if (ctx.config.cache && !cache)
          ctx.log.warn('cache: no cache service on this runner; building without the cache', 'runner')
        if (ctx.config.cache && cache) {
          const k = cacheKey(ctx.config.app, sourceDir, keyFiles)
          if ('missing' in k)
            ctx.log.warn(
              `cache: key file${k.missing.length > 1 ? 's' : ''} ${k.missing.join(', ')} missing in ${sourceDir}; building without the cache`,
              'runner'
            )
          else {
            key = k.key
            try {
              hit = await cache.restore(key, paths, staging)
              ctx.log.info(
                hit
                  ? `cache hit: restored ${paths.join(', ')} from ${cache.name} (key ${key})`
                  : `cache miss: no entry for key ${key} in ${cache.name}`,
                'runner'
              )
            } catch (e) {
              if (ctx.signal.aborted) throw new StageError('build-local', 'interrupted', 'runner')
              ctx.log.warn(
                `cache: could not restore from ${cache.name} (${errorMessage(e)}); building without it`
              )
            }
          }
        }
        await runOnRunner(ctx, 'build-local', 'build_local command', command, staging)
        built = true
        if (key && cache && !hit) {
          try {
            await cache.save(key, paths, staging)
            ctx.log.info(`cache saved: ${paths.join(', ')} to ${cache.name} (key ${key})`, 'runner')
          } catch (e) {
            ctx.log.warn(`cache: could not save to ${cache.name} (${errorMessage(e)}); the deploy goes on`)
          }
        }
      }
    }
  }
}
