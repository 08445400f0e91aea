/**
 * Downtime benchmark (not a test): failed requests through nginx while deploying, and rollback time, for
 *   - safe-deploy blue-green (two ports, health gate, upstream flip, drain),
 *   - safe-deploy symlink + restart (one port: stop the old process, start the new one),
 *   - Capistrano 3 (Debian's `capistrano`) with the same restart script, when `cap` is installed
 *     (`apt-get install capistrano`; BENCH_CAPISTRANO=0 skips it).
 * Same fixture app (__tests__/e2e/harness/app.ts), same sshd on loopback, one nginx per strategy.
 *
 *   npx tsx bench/downtime.ts            BENCH_DEPLOYS=3 (measured deploys per strategy), BENCH_EVERY_MS=10
 *
 * Load: one request at a time through nginx, a new connection each (no keep-alive), one every BENCH_EVERY_MS,
 * 2 s timeout; a request fails on a non-200 answer or a connection error. At most 100,000 requests and
 * 10 minutes per loop. Rollback time: from the rollback command's start until nginx first answers with
 * the previous release (and, separately, until the command returned).
 */
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, startSshd, stopAll, tempDir, type SshHost } from '../__tests__/e2e/harness/sshd.js'
import { httpGet, stopApp } from '../__tests__/e2e/harness/app.js'
import { portPidFile, startNginx, writeBlueGreenApp, type Nginx } from '../__tests__/e2e/harness/nginx.js'
import { project, q, type CliRun, type Project } from '../__tests__/e2e/support.js'
import { capVersion, git, run, writeCapistrano } from './capistrano.js'

const DEPLOYS = Number(process.env.BENCH_DEPLOYS ?? 3)
const EVERY_MS = Number(process.env.BENCH_EVERY_MS ?? 10)
const MAX_REQUESTS = 100_000
const MAX_LOOP_MS = 10 * 60_000

interface LoadResult {
  total: number
  failed: number
  samples: string[]
}

/** Sequential requests until stop() (bounded by MAX_REQUESTS and MAX_LOOP_MS). */
function load(url: string, onAnswer?: (body: string, at: number) => void) {
  let stopped = false
  const r: LoadResult = { total: 0, failed: 0, samples: [] }
  const started = Date.now()
  const done = (async () => {
    while (!stopped && r.total < MAX_REQUESTS && Date.now() - started < MAX_LOOP_MS) {
      const t0 = Date.now()
      const a = await httpGet(url, 2000)
      r.total++
      if (a.status !== 200) {
        r.failed++
        const title =
          /<title>([^<]*)<\/title>/.exec(a.body)?.[1] ?? a.body.trim().replace(/\s+/g, ' ').slice(0, 60)
        const what = String(a.status || a.error)
        if (r.samples.length < 5) r.samples.push(title.startsWith(what) ? title : `${what} ${title}`.trim())
      } else onAnswer?.(a.body.trim(), Date.now())
      const wait = EVERY_MS - (Date.now() - t0)
      if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
    }
  })()
  return {
    async stop(): Promise<LoadResult> {
      stopped = true
      await done
      return r
    }
  }
}

const pause = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))

interface Scenario {
  name: string
  nginx: Nginx
  /** Deploys version `v` (not measured: the caller wraps it). */
  deploy(v: string): Promise<void>
  /** Rolls back to the previous release. */
  rollback(): Promise<void>
  cleanup(): Promise<void>
}

interface Measured {
  name: string
  deploys: LoadResult
  perDeploy: string[]
  deploySeconds: number[]
  rollback: LoadResult
  rollbackServingS: number
  rollbackCommandS: number
}

function ok(r: CliRun, what: string): void {
  if (r.code !== 0)
    throw new Error(`${what} exited ${r.code}:\n${r.stderr.split('\n').slice(-15).join('\n')}`)
}

async function measure(s: Scenario): Promise<Measured> {
  process.stderr.write(`\n== ${s.name}\n`)
  await s.deploy('1.0.0') // warm-up: something serves before we measure
  const all: LoadResult = { total: 0, failed: 0, samples: [] }
  const perDeploy: string[] = []
  const deploySeconds: number[] = []
  for (let i = 2; i < 2 + DEPLOYS; i++) {
    const l = load(`${s.nginx.url}/`)
    await pause(300)
    const t0 = performance.now()
    await s.deploy(`${i}.0.0`)
    deploySeconds.push((performance.now() - t0) / 1000)
    await pause(300)
    const r = await l.stop()
    all.total += r.total
    all.failed += r.failed
    all.samples.push(...r.samples)
    perDeploy.push(`${r.failed}/${r.total}`)
    process.stderr.write(
      `   deploy ${i}.0.0: ${r.failed}/${r.total} failed (${deploySeconds.at(-1)?.toFixed(1)} s)\n`
    )
  }
  const previous = `version ${DEPLOYS}.0.0`
  let servingAt = 0
  const l = load(`${s.nginx.url}/`, (body, at) => {
    if (!servingAt && body === previous) servingAt = at
  })
  await pause(300)
  const t0 = Date.now()
  await s.rollback()
  const commandS = (Date.now() - t0) / 1000
  await pause(300)
  const rb = await l.stop()
  const final = (await httpGet(`${s.nginx.url}/`)).body.trim()
  if (final !== previous)
    throw new Error(`${s.name}: after the rollback nginx serves "${final}", not "${previous}"`)
  process.stderr.write(
    `   rollback: serving ${previous} after ${((servingAt - t0) / 1000).toFixed(2)} s, command ${commandS.toFixed(1)} s, ${rb.failed}/${rb.total} failed\n`
  )
  return {
    name: s.name,
    deploys: all,
    perDeploy,
    deploySeconds,
    rollback: rb,
    rollbackServingS: (servingAt - t0) / 1000,
    rollbackCommandS: commandS
  }
}

/** safe-deploy with the e2e fixture app behind nginx; `sw` is the switch section (or none: symlink). */
async function safeDeployScenario(
  host: SshHost,
  name: string,
  kind: 'blue-green' | 'symlink'
): Promise<Scenario> {
  const root = host.root(kind)
  const ports: [number, number] = [await freePort(), await freePort()]
  const single = await freePort()
  const nginx = await startNginx({ initialPort: kind === 'symlink' ? single : await freePort() })
  const p: Project = await project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      env: { ...(c.env as Record<string, string>), HOST: '127.0.0.1', PORT: String(single) },
      stages:
        kind === 'symlink'
          ? { build: 'echo built > BUILD_OK', restart: 'bin/restart' }
          : { build: 'echo built > BUILD_OK' },
      switch:
        kind === 'symlink'
          ? { strategy: 'symlink' }
          : {
              strategy: 'blue-green',
              ports,
              start: 'bin/start',
              stop: 'bin/stop',
              upstream_file: nginx.upstreamFile,
              proxy_reload: nginx.reloadCommand,
              drain: '1s',
              timeout: '10s'
            },
      verify: {
        http: { url: `${nginx.url}/`, retries: 20, interval: '200ms' },
        command: `test "$(curl -s --max-time 2 ${q(`${nginx.url}/`)})" = "version $(cat VERSION)"`
      }
    })
  })
  const src = join(p.dir, 'app')
  return {
    name,
    nginx,
    async deploy(v) {
      writeBlueGreenApp(src, { version: v })
      ok(await p.deploy(), `${name}: deploy ${v}`)
    },
    async rollback() {
      ok(await p.run(['rollback']), `${name}: rollback`)
    },
    async cleanup() {
      await stopApp(join(root, 'shared', 'app.pid'))
      for (const port of ports) await stopApp(portPidFile(root, port))
      await nginx.stop()
    }
  }
}

/** Capistrano 3: git strategy from a local repo, `bin/restart` after deploy:publishing (deploy and rollback). */
async function capistranoScenario(host: SshHost): Promise<Scenario> {
  const root = host.root('capistrano')
  const port = await freePort()
  const nginx = await startNginx({ initialPort: port })
  const dir = tempDir('safe-deploy-bench-cap-')
  const repo = join(dir, 'repo')
  mkdirSync(repo)
  git(repo, 'init', '-q', '-b', 'main')
  const capDir = join(dir, 'cap')
  writeCapistrano({
    capDir,
    repo,
    root,
    host,
    env: { port: String(port), host: '127.0.0.1', pid_file: `${root}/shared/app.pid` }
  })
  const cap = async (task: string) => {
    const r = await run('cap', ['production', task], capDir)
    if (r.code !== 0)
      throw new Error(`cap production ${task} exited ${r.code}:\n${r.out.split('\n').slice(-20).join('\n')}`)
  }
  return {
    name: `Capistrano ${capVersion()} (symlink + restart)`,
    nginx,
    async deploy(v) {
      writeBlueGreenApp(repo, { version: v })
      git(repo, 'add', '-A')
      git(repo, 'commit', '-q', '-m', `v${v}`)
      await cap('deploy')
    },
    rollback: () => cap('deploy:rollback'),
    async cleanup() {
      await stopApp(join(root, 'shared', 'app.pid'))
      await nginx.stop()
    }
  }
}

function table(rows: Measured[]): string {
  const head = [
    'strategy',
    `failed/total during ${DEPLOYS} deploys`,
    'per deploy',
    'deploy time',
    'rollback: serving previous',
    'rollback command',
    'failed/total during rollback'
  ]
  const body = rows.map(m => [
    m.name,
    `${m.deploys.failed}/${m.deploys.total}`,
    m.perDeploy.join(', '),
    `${(m.deploySeconds.reduce((a, b) => a + b, 0) / m.deploySeconds.length).toFixed(1)} s avg`,
    `${m.rollbackServingS.toFixed(2)} s`,
    `${m.rollbackCommandS.toFixed(1)} s`,
    `${m.rollback.failed}/${m.rollback.total}`
  ])
  const lines = [head, head.map(() => '---'), ...body].map(r => `| ${r.join(' | ')} |`)
  return lines.join('\n')
}

async function main(): Promise<void> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    throw new Error('run as root (sshd, nginx)')
  const host = await startSshd()
  const results: Measured[] = []
  const scenarios: Array<() => Promise<Scenario>> = [
    () => safeDeployScenario(host, 'safe-deploy blue-green', 'blue-green'),
    () => safeDeployScenario(host, 'safe-deploy symlink + restart', 'symlink')
  ]
  const wantCap = process.env.BENCH_CAPISTRANO !== '0'
  if (wantCap && existsSync('/usr/bin/cap')) scenarios.push(() => capistranoScenario(host))
  else if (wantCap)
    process.stderr.write('Capistrano skipped: `cap` is not installed (apt-get install capistrano)\n')
  try {
    for (const make of scenarios) {
      const s = await make()
      try {
        results.push(await measure(s))
      } finally {
        await s.cleanup()
      }
    }
  } finally {
    await stopAll()
  }
  console.log(
    `\nrequests through nginx every ${EVERY_MS} ms (one at a time, no keep-alive); ${DEPLOYS} measured deploys per strategy after a warm-up deploy\n`
  )
  console.log(table(results))
  for (const m of results) {
    if (m.deploys.samples.length || m.rollback.samples.length)
      console.log(
        `\n${m.name}: sample failures: ${[...m.deploys.samples, ...m.rollback.samples].slice(0, 5).join('; ')}`
      )
  }
}

main().then(
  () => process.exit(0),
  e => {
    console.error(e instanceof Error ? e.stack : e)
    process.exit(1)
  }
)
