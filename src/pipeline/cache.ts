/**
 * The CLI's build cache: one dir per key under `~/.cache/safe-deploy/` (or `--cache-dir`), holding a tar of
 * the `cache:` paths. `.env*` files are never written into it, wherever they are under those paths.
 */
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { sh } from '../commands/quote.js'
import { LocalTransport } from '../transport/local.js'
import type { BuildCache } from './buildlocal.js'

/** The default cache dir: $XDG_CACHE_HOME/safe-deploy, else ~/.cache/safe-deploy. */
export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache'), 'safe-deploy')
}

async function tar(command: string): Promise<void> {
  const r = await new LocalTransport('runner').exec(command)
  if (r.code !== 0) throw new Error(`tar failed (exit ${r.code}): ${r.stderr.trim()}`)
}

export function dirCache(root: string): BuildCache {
  const archive = (key: string) => join(root, key, 'cache.tar')
  return {
    name: `the local cache (${root})`,
    async restore(key, _paths, dir) {
      const file = archive(key)
      if (!existsSync(file)) return false
      await tar(`tar -xf ${sh(file)} -C ${sh(dir)}`)
      return true
    },
    async save(key, paths, dir) {
      const present = paths.filter(p => existsSync(join(dir, p)))
      if (!present.length) throw new Error(`none of ${paths.join(', ')} exists after the build`)
      const file = archive(key)
      mkdirSync(join(root, key), { recursive: true })
      const part = `${file}.${process.pid}.part`
      try {
        await tar(`tar -cf ${sh(part)} ${sh('--exclude=.env*')} -C ${sh(dir)} ${present.map(sh).join(' ')}`)
        renameSync(part, file)
      } finally {
        rmSync(part, { force: true })
      }
    }
  }
}
