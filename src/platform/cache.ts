/**
 * The Action's build cache: the GitHub Actions cache service through @actions/cache. @actions/cache archives
 * paths relative to the workspace and keys an entry by the paths as given, so each call runs with the
 * workspace (and the working directory) set to the dir the paths are in, and always with the same relative
 * paths. `.env*` files are left out: the paths are copied without them before saving.
 */
import * as cache from '@actions/cache'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { copyTree, type BuildCache } from '../pipeline/buildlocal.js'

async function inDir<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const cwd = process.cwd()
  const workspace = process.env.GITHUB_WORKSPACE
  process.env.GITHUB_WORKSPACE = dir
  process.chdir(dir)
  try {
    return await fn()
  } finally {
    process.chdir(cwd)
    if (workspace === undefined) delete process.env.GITHUB_WORKSPACE
    else process.env.GITHUB_WORKSPACE = workspace
  }
}

/** The GitHub cache, or undefined when the runner has no cache service (GHES without it, a local runner). */
export function githubCache(): BuildCache | undefined {
  if (!cache.isFeatureAvailable()) return undefined
  return {
    name: 'the GitHub Actions cache',
    async restore(key, paths, dir) {
      return (await inDir(dir, () => cache.restoreCache([...paths], key))) === key
    },
    async save(key, paths, dir) {
      const present = paths.filter(p => existsSync(join(dir, p)))
      if (!present.length) throw new Error(`none of ${paths.join(', ')} exists after the build`)
      const clean = mkdtempSync(join(tmpdir(), 'safe-deploy-cache-'))
      try {
        await copyTree(dir, clean, ['.env*'], { paths: present })
        const id = await inDir(clean, () => cache.saveCache([...paths], key))
        if (id === -1) throw new Error('the cache service did not take it (see the message above)')
      } finally {
        rmSync(clean, { recursive: true, force: true })
      }
    }
  }
}
