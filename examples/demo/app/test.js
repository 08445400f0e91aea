// The demo's test stage: runs on the runner before anything touches a server.
import { readFileSync } from 'node:fs'
const version = readFileSync(new URL('./VERSION', import.meta.url), 'utf8').trim()
if (!/^\d+\.\d+\.\d+$/.test(version)) {
  console.error(`VERSION is not semver: ${version}`)
  process.exit(1)
}
console.log(`tests passed for ${version}`)
