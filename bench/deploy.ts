/**
 * Deploy and rollback time of the demo app over real SSH on loopback (not a test: `npx tsx bench/deploy.ts`).
 * Starts one sshd like the e2e harness, deploys the demo app N times (each a new release), then measures
 * a manual rollback and a failed deploy that rolls back automatically. Prints medians.
 * BENCH_RUNS=5 for more repetitions.
 */
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { stringify } from 'yaml'
import { runCli } from '../src/platform/cli.js'
import { freePort, startSshd, stopAll } from '../__tests__/e2e/harness/sshd.js'
import { stopApp } from '../__tests__/e2e/harness/app.js'

const runs = Number(process.env.BENCH_RUNS ?? 3)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

async function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; ms: number }> {
  const sink = new PassThrough()
  sink.resume()
  const t0 = performance.now()
  const code = await runCli(args, { stdout: sink, stderr: sink, env })
  return { code, ms: performance.now() - t0 }
}

const host = await startSshd()
const work = mkdtempSync(join(tmpdir(), 'safe-deploy-bench-'))
const root = host.root('demo')
const port = await freePort()
const src = join(work, 'app')
cpSync(join(import.meta.dirname, '..', 'examples', 'demo', 'app'), src, { recursive: true })
host.run(`mkdir -p ${root}/shared && printf 'PORT=${port}\\n' > ${root}/shared/.env`)
const config = {
  app: 'demo',
  path: root,
  hosts: [{ address: host.address, port: host.port, user: 'root' }],
  ssh: { private_key: 'env:SSH_KEY', known_hosts: 'env:KNOWN_HOSTS' },
  source: { dir: './app' },
  shared: { files: ['.env'], dirs: ['logs'] },
  stages: { restart: `PATH=${join(process.execPath, '..')}:$PATH bin/restart` },
  verify: { http: { url: `http://127.0.0.1:${port}/health`, retries: 20, interval: '200ms' } }
}
const file = join(work, 'safe-deploy.yml')
writeFileSync(file, stringify(config))
const env = {
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  SSH_KEY: host.privateKey,
  KNOWN_HOSTS: host.knownHostsLine
}
process.chdir(work)

const deploys: number[] = []
const rollbacks: number[] = []
const failed: number[] = []
try {
  for (let i = 0; i < runs; i++) {
    writeFileSync(join(src, 'VERSION'), `1.0.${i}\n`)
    const d = await cli(['deploy', '--config', file], env)
    if (d.code !== 0) throw new Error(`deploy exited ${d.code}`)
    deploys.push(d.ms)
    writeFileSync(join(src, 'VERSION'), `1.1.${i}\n`)
    if ((await cli(['deploy', '--config', file], env)).code !== 0) throw new Error('second deploy failed')
    const r = await cli(['rollback', '--config', file], env)
    if (r.code !== 0) throw new Error(`rollback exited ${r.code}`)
    rollbacks.push(r.ms)
    writeFileSync(join(src, 'BROKEN'), 'x')
    const f = await cli(['deploy', '--config', file], env)
    if (f.code !== 4) throw new Error(`failing deploy exited ${f.code}, expected 4`)
    failed.push(f.ms)
    cpSync(join(import.meta.dirname, '..', 'examples', 'demo', 'app', 'VERSION'), join(src, 'VERSION'))
    writeFileSync(join(src, 'BROKEN'), '')
    await import('node:fs').then(fs => fs.rmSync(join(src, 'BROKEN')))
  }
} finally {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
}
const s = (xs: number[]) => `${(median(xs) / 1000).toFixed(2)} s (median of ${xs.length})`
console.log(`deploy (upload, link, switch, restart, verify)   ${s(deploys)}`)
console.log(`rollback (switch, restart, verify)              ${s(rollbacks)}`)
console.log(`failed deploy incl. automatic rollback          ${s(failed)}`)
