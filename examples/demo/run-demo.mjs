// `npm run demo`: deploy v1 of the demo app into a temp dir, then a broken v2 whose health check fails,
// and watch safe-deploy roll it back. Uses the bundled CLI (dist/cli.js), exactly what users run.
import { spawnSync } from 'node:child_process'
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
  existsSync
} from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const cli = process.env.SAFE_DEPLOY_CLI ?? join(here, '..', '..', 'dist', 'cli.js')
const work = mkdtempSync(join(tmpdir(), 'safe-deploy-demo-'))
const root = join(work, 'server', 'demo')

const port = await new Promise((resolve, reject) => {
  const srv = createServer()
  srv.on('error', reject)
  srv.listen(0, '127.0.0.1', () => {
    const p = srv.address().port
    srv.close(() => resolve(p))
  })
})

// What a person does once on a new server: create the shared config the app reads.
mkdirSync(join(root, 'shared'), { recursive: true })
writeFileSync(join(root, 'shared', '.env'), `PORT=${port}\n`, { mode: 0o600 })

function source(version, broken) {
  const dir = join(work, `source-${version}`)
  cpSync(join(here, 'app'), dir, { recursive: true })
  writeFileSync(join(dir, 'VERSION'), `${version}\n`)
  if (broken) writeFileSync(join(dir, 'BROKEN'), 'this release answers 500 on /health\n')
  return dir
}

function deploy(title, dir) {
  console.log(`\n### ${title}\n`)
  const r = spawnSync(process.execPath, [cli, 'deploy', '--config', join(here, 'safe-deploy.yml')], {
    stdio: 'inherit',
    cwd: work,
    env: {
      ...process.env,
      DEMO_PATH: root,
      DEMO_SOURCE: dir,
      DEMO_HEALTH_URL: `http://127.0.0.1:${port}/health`
    }
  })
  return r.status
}

async function answer() {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`)
    return (await res.text()).trim()
  } catch (e) {
    return `no answer (${e.cause?.code ?? e.message})`
  }
}

function stopApp() {
  // on Windows, bin/restart (run by Git for Windows' sh) also writes the app's Windows pid
  const winPid = join(root, 'shared', 'app.winpid')
  if (process.platform === 'win32' && existsSync(winPid)) {
    const pid = readFileSync(winPid, 'utf8').trim()
    spawnSync('taskkill', ['/pid', pid, '/T', '/F'], { stdio: 'ignore' })
    return
  }
  const pidFile = join(root, 'shared', 'app.pid')
  if (!existsSync(pidFile)) return
  try {
    process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGTERM')
  } catch {
    /* already stopped */
  }
}

function currentTarget() {
  try {
    return readlinkSync(join(root, 'current'))
  } catch {
    return undefined
  }
}

let failed = false
try {
  const first = deploy('1. deploy v1.0.0 (healthy)', source('1.0.0', false))
  const said1 = await answer()
  console.log(`\nexit code ${first}; the app says: ${said1}`)
  const good = currentTarget()
  if (first !== 0 || !said1.includes('1.0.0') || !good) failed = true

  const second = deploy('2. deploy v2.0.0 (its /health answers 500)', source('2.0.0', true))
  const said2 = await answer()
  console.log(`\nexit code ${second} (4 = failed and rolled back); the app says: ${said2}`)
  // rolled back: current is the first release again, and v1 answers
  if (second !== 4 || !said2.includes('1.0.0') || currentTarget() !== good) failed = true

  console.log(`\n### where to look\n`)
  console.log(`  current      -> ${currentTarget() ?? '(none)'}`)
  console.log(`  releases     ${join(root, 'releases')}`)
  console.log(`  history      ${join(root, '.safe-deploy', 'history.jsonl')}`)
  console.log(`  deploy logs  ${join(work, 'safe-deploy-logs')}`)
  console.log(`  app log      ${join(root, 'shared', 'logs', 'app.log')}`)
} finally {
  stopApp()
  console.log('\nThe demo app was stopped. Everything else stays in the temp dir above.')
}
if (failed) {
  console.error('\nThe demo did not go as expected: see the log above.')
  process.exit(1)
}
