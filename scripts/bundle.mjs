// Bundles the three entry points with ncc into dist/index.js (Action), dist/post.js (Action post step)
// and dist/cli.js (the `safe-deploy` bin). ssh2 reads __dirname/__filename, which an ESM bundle lacks
// (ncc #749): each bundle starts with a small prelude that defines them.
//
// The same dist/ whatever `npm ci` did: ssh2 and cpu-features have optional native add-ons that their
// install scripts build (`npm ci` without --ignore-scripts). A `require('./....node')` is an external here,
// so ncc neither copies a built add-on nor inlines anything for it: at run time the require fails, as it
// does when the add-on was never built, and ssh2 uses its pure-JS crypto.
//
// dist/ is replaced only at the end, by a rename: a failing build leaves the previous dist/ as it was.
// Anything else ncc would emit next to a bundle is refused: dist/ is the three bundles.
import ncc from '@vercel/ncc'
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const entries = ['index', 'post', 'cli']
const out = 'dist'
// next to dist/ (same file system, so the swap is a rename); build/ is ignored by git
const staging = join('build', `dist-${process.pid}`)
const old = join('build', `dist-old-${process.pid}`)

const prelude = [
  "import { createRequire as __sdCreateRequire } from 'node:module';",
  "import { fileURLToPath as __sdFileURLToPath } from 'node:url';",
  "import { dirname as __sdDirname } from 'node:path';",
  'const __filename = __sdFileURLToPath(import.meta.url);',
  'const __dirname = __sdDirname(__filename);',
  'const require = __sdCreateRequire(import.meta.url);',
  ''
].join('\n')

// ncc's assets besides the bundle that we know and do not ship: ssh2's Windows Pageant helper and the
// package.json it writes for the module type
const ignoredAssets = new Set(['pagent.exe', 'package.json'])

try {
  rmSync(staging, { recursive: true, force: true })
  mkdirSync(staging, { recursive: true })
  for (const name of entries) {
    const { code, assets } = await ncc(join(process.cwd(), 'src', `${name}.ts`), {
      quiet: true,
      target: 'es2022',
      // a key "/re/" is a regular expression; "$1" the matched request, kept as it was written
      externals: { '/^(.*\\.node)$/': '$1' },
      // files of our own that the code reads at run time (init's examples/<stack>/safe-deploy.yml) are read
      // from the repository or the npm package, next to dist/: ncc copies only dependencies' assets
      filterAssetBase: join(process.cwd(), 'node_modules')
    })
    const extra = Object.keys(assets ?? {}).filter(f => !ignoredAssets.has(f))
    if (extra.length) throw new Error(`ncc emitted files besides the bundle for ${name}: ${extra.join(', ')}`)
    const shebang = name === 'cli' ? '#!/usr/bin/env node\n' : ''
    writeFileSync(join(staging, `${name}.js`), shebang + prelude + code.replace(/^#!.*\n/, ''), {
      mode: name === 'cli' ? 0o755 : 0o644
    })
  }
  // dist/ files are ESM: say so for Node when dist/ is used outside this package.json's reach
  writeFileSync(join(staging, 'package.json'), JSON.stringify({ type: 'module' }, null, 2) + '\n')
  rmSync(old, { recursive: true, force: true })
  try {
    renameSync(out, old)
  } catch (e) {
    if (e.code !== 'ENOENT') throw e
  }
  try {
    renameSync(staging, out)
  } catch (e) {
    renameSync(old, out)
    throw e
  }
  rmSync(old, { recursive: true, force: true })
} catch (e) {
  rmSync(staging, { recursive: true, force: true })
  console.error(`bundle failed; ${out}/ is unchanged: ${e instanceof Error ? e.message : String(e)}`)
  process.exit(1)
}
console.log(`bundled ${entries.map(e => `dist/${e}.js`).join(', ')}`)
