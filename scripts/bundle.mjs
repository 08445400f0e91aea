// Bundles the three entry points with ncc into dist/index.js (Action), dist/post.js (Action post step)
// and dist/cli.js (the `safe-deploy` bin). ssh2 reads __dirname/__filename, which an ESM bundle lacks
// (ncc #749): each bundle starts with a small prelude that defines them.
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'

const entries = ['index', 'post', 'cli']
const out = 'dist'
const work = join('build', 'ncc')
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

const prelude = [
  "import { createRequire as __sdCreateRequire } from 'node:module';",
  "import { fileURLToPath as __sdFileURLToPath } from 'node:url';",
  "import { dirname as __sdDirname } from 'node:path';",
  'const __filename = __sdFileURLToPath(import.meta.url);',
  'const __dirname = __sdDirname(__filename);',
  'const require = __sdCreateRequire(import.meta.url);',
  ''
].join('\n')

for (const name of entries) {
  const dir = join(work, name)
  rmSync(dir, { recursive: true, force: true })
  execFileSync('npx', ['ncc', 'build', `src/${name}.ts`, '-o', dir, '--quiet', '--target', 'es2022'], {
    stdio: 'inherit'
  })
  const files = readdirSync(dir)
  const extra = files.filter(f => !/^index\.(m?js)$/.test(f) && f !== 'package.json' && f !== 'pagent.exe')
  if (extra.length) throw new Error(`ncc emitted files besides the bundle for ${name}: ${extra.join(', ')}`)
  const main = existsSync(join(dir, 'index.mjs')) ? 'index.mjs' : 'index.js'
  let code = readFileSync(join(dir, main), 'utf8')
  code = code.replace(/^#!.*\n/, '')
  const shebang = name === 'cli' ? '#!/usr/bin/env node\n' : ''
  writeFileSync(join(out, `${name}.js`), shebang + prelude + code, { mode: name === 'cli' ? 0o755 : 0o644 })
}
// dist/ files are ESM: say so for Node when dist/ is used outside this package.json's reach
writeFileSync(join(out, 'package.json'), JSON.stringify({ type: 'module' }, null, 2) + '\n')
console.log(`bundled ${entries.map(e => `dist/${e}.js`).join(', ')}`)
