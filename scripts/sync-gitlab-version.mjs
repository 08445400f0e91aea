// The GitLab component pins the CLI it runs: every template's `version` input defaults to the exact version
// of this package, so a component release runs the npm release of the same tag. `npm version X` runs this
// (the "version" script) and stages the templates with the bump; `--check` only reports a mismatch (CI,
// release.yml).
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const check = process.argv.includes('--check')
const version = JSON.parse(readFileSync('package.json', 'utf8')).version
const dir = join('gitlab', 'templates')
// the `version:` input of the spec header: its `default:` line, whatever it holds now
const pin = /(\n {4}version:\n {6}default: )[^\n]*/
const wrong = []
for (const f of readdirSync(dir).filter(f => f.endsWith('.yml'))) {
  const file = join(dir, f)
  const text = readFileSync(file, 'utf8')
  if (!pin.test(text)) throw new Error(`${file}: no \`version\` input with a default`)
  const next = text.replace(pin, `$1'${version}'`)
  if (next === text) continue
  wrong.push(file)
  if (!check) writeFileSync(file, next)
}
if (check && wrong.length) {
  console.error(`the version input's default is not '${version}' (package.json) in: ${wrong.join(', ')}`)
  console.error('run: node scripts/sync-gitlab-version.mjs')
  process.exit(1)
}
console.log(
  check
    ? `gitlab/templates pin ${version}`
    : `gitlab/templates: version ${version}${wrong.length ? ` (${wrong.join(', ')})` : ''}`
)
