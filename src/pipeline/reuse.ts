/**
 * Build reuse (`build_reuse: { paths, key_files }`): before the build, the dirs the build makes (node_modules,
 * .venv, vendor) are hard-linked (`cp -al`) from the previous release when the key files (the lockfiles) have
 * the same content as when that release was built, so that `npm install`, `pip install` or `composer install`
 * finds them in place. The key (sha256 over the key files' names and bytes, on the runner) is stored per
 * release in `.safe-deploy/build-keys/<id>`; a changed key links nothing.
 */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { sh } from '../commands/quote.js'
import { script, type RemoteCommand } from '../commands/command.js'
import { parseKeyValues } from '../commands/release.js'
import type { Layout } from '../commands/layout.js'
import { runOn, type HostSession, type RunContext } from '../host/context.js'

/** The releases a new one may take files from, best first: `current` if complete, then newest complete. */
export function previousReleases(s: HostSession): string[] {
  const complete = new Set(s.complete ?? [])
  const newestFirst = [...s.releases].filter(r => complete.has(r)).sort((a, b) => (a < b ? 1 : -1))
  const cur = s.current && complete.has(s.current) ? [s.current] : []
  return [...new Set([...cur, ...newestFirst])]
}

/** sha256 over each key file's name and content (a missing file counts as missing). */
export function buildKey(sourceDir: string, keyFiles: string[]): string {
  const h = createHash('sha256')
  for (const f of keyFiles) {
    const abs = join(sourceDir, f)
    h.update(`${f}\0`)
    h.update(existsSync(abs) ? Buffer.concat([Buffer.from('file\0'), readFileSync(abs)]) : 'missing\0')
    h.update('\0')
  }
  return h.digest('hex')
}

/** Records the new release's key, finds a candidate with the same key, links the paths from it. */
export function reuseCommand(
  layout: Layout,
  id: string,
  key: string,
  candidates: string[],
  paths: string[]
): RemoteCommand {
  const keys = `${layout.meta}/build-keys`
  // `path` is a shell word (quoted); true when its parent dir resolves inside `real`
  const inside = (path: string, real: string) =>
    `case "$(cd "$(dirname ${path})" 2>/dev/null && pwd -P)/" in "${real}"/*) true;; *) false;; esac`
  // a dir above the path in the new release that is a symlink: mkdir -p would create dirs through it
  const symlinkedParent = (p: string) => {
    const parts = p.split('/').filter(c => c && c !== '.')
    const tests = parts.slice(0, -1).map((_, i) => `[ -L "$rel/"${sh(parts.slice(0, i + 1).join('/'))} ]`)
    return tests.length ? `{ ${tests.join(' || ')}; }` : 'false'
  }
  return {
    label: 'reuse build dirs',
    script: script(
      `keys=${sh(keys)}`,
      `rel=${sh(layout.release(id))}`,
      `key=${sh(key)}`,
      'mkdir -p "$keys" && printf "%s\\n" "$key" > "$keys/"' + sh(id) + ' || exit 1',
      // keys of releases removed since
      `for f in "$keys"/*; do [ -e "$f" ] || continue; [ -d ${sh(layout.releases)}/"\${f##*/}" ] || rm -f "$f"; done`,
      'from=',
      `for r in ${candidates.map(sh).join(' ')}; do`,
      '  if [ "$(cat "$keys/$r" 2>/dev/null)" = "$key" ]; then from=$r; break; fi',
      'done',
      '[ -n "$from" ] || { echo STATE=none; exit 0; }',
      'printf "FROM=%s\\n" "$from"',
      `old=${sh(layout.releases)}/"$from"`,
      'oldreal=$(cd "$old" && pwd -P) || exit 1',
      'relreal=$(cd "$rel" && pwd -P) || exit 1',
      ...paths.map(p =>
        [
          `if [ -e "$rel/"${sh(p)} ] || [ -L "$rel/"${sh(p)} ]; then printf 'SHIPPED=%s\\n' ${sh(p)}`,
          `elif [ ! -d "$old/"${sh(p)} ] || [ -L "$old/"${sh(p)} ]; then printf 'ABSENT=%s\\n' ${sh(p)}`,
          `elif ! ${inside(`"$old/"${sh(p)}`, '$oldreal')}; then printf 'OUTSIDE=%s\\n' ${sh(p)}`,
          `elif ${symlinkedParent(p)} || ! { mkdir -p "$(dirname "$rel/"${sh(p)})" && ${inside(`"$rel/"${sh(p)}`, '$relreal')}; }; then printf 'OUTSIDE=%s\\n' ${sh(p)}`,
          `elif cp -al "$old/"${sh(p)} "$rel/"${sh(p)}; then printf 'LINKED=%s\\n' ${sh(p)}`,
          `else rm -rf "$rel/"${sh(p)}; printf 'FAILED=%s\\n' ${sh(p)}; fi`
        ].join('\n')
      ),
      'true'
    )
  }
}

/** Runs before the build on each host (deploy stage); logs what was reused and why not. */
export async function reuseBuild(ctx: RunContext, s: HostSession, release: string): Promise<void> {
  const reuse = ctx.config.build_reuse
  if (!reuse || !ctx.config.stages.build) return
  const key = ctx.dryRun ? '<sha256 of the key files>' : buildKey(ctx.loaded.sourceDir, reuse.key_files)
  const r = await runOn(ctx, s, reuseCommand(s.layout, release, key, previousReleases(s), reuse.paths), {
    stage: 'deploy'
  })
  const kv = parseKeyValues(r.stdout)
  const from = kv.get('FROM')?.[0]
  const files = reuse.key_files.join(', ')
  if (!from) {
    ctx.log.info(
      `build reuse: nothing linked: no previous release was built with these ${files}`,
      s.host.name
    )
    return
  }
  const said = (k: string) => kv.get(k) ?? []
  const parts = [
    said('LINKED').length && `linked ${said('LINKED').join(', ')} from releases/${from} (${files} unchanged)`,
    said('SHIPPED').length && `not linked, shipped in the release: ${said('SHIPPED').join(', ')}`,
    said('ABSENT').length && `not in releases/${from}: ${said('ABSENT').join(', ')}`,
    said('OUTSIDE').length && `refused, resolves outside the release: ${said('OUTSIDE').join(', ')}`,
    said('FAILED').length && `could not link: ${said('FAILED').join(', ')}`
  ].filter(Boolean)
  ctx.log.info(`build reuse: ${parts.join('; ')}`, s.host.name)
}
