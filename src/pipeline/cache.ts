/**
 * The CLI's build cache: one dir per key under `~/.cache/safe-deploy/` (or `--cache-dir`), holding a copy of
 * the `cache:` paths (`<key>/tree`, copied in-process: no `tar` on the runner). `.env*` files are never
 * written into it, wherever they are under those paths. A cache an older version wrote as `cache.tar` is a
 * miss (the next build saves the tree).
 */
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { copyTree, type BuildCache } from './buildlocal.js'

/** The default cache dir: $XDG_CACHE_HOME/safe-deploy, else ~/.cache/safe-deploy. */
export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache'), 'safe-deploy')
}

export function dirCache(root: string): BuildCache {
  const tree = (key: string) => join(root, key, 'tree')
  return {
    name: `the local cache (${root})`,
    async restore(key, _paths, dir) {
      const saved = tree(key)
      if (!existsSync(saved)) return false
      await copyTree(saved, dir, [])
      return true
    },
    async save(key, paths, dir) {
      const present = paths.filter(p => existsSync(join(dir, p)))
      if (!present.length) throw new Error(`none of ${paths.join(', ')} exists after the build`)
      const saved = tree(key)
      mkdirSync(join(root, key), { recursive: true })
      const part = `${saved}.${process.pid}.part`
      try {
        rmSync(part, { recursive: true, force: true })
        await copyTree(dir, part, ['.env*'], { paths: present })
        // another run may have saved the same key meanwhile: same key, same inputs; the newer copy wins
        rmSync(saved, { recursive: true, force: true })
        renameSync(part, saved)
      } finally {
        rmSync(part, { recursive: true, force: true })
      }
    }
  }
}
