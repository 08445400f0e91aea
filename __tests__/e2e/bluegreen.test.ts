/**
 * Blue-green over real sshd + a real nginx + the fixture app: each release starts on the idle port of the
 * pair, is health-gated there, nginx is pointed at it (upstream file + reload), the old port drains and
 * stops. Failures before the flip change nothing; failures after it flip back. Then the zero-downtime test:
 * requests through nginx during two deploys and a rollback must all succeed.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { httpGet, isRunning, readPid } from './harness/app.js'
import { portPidFile, startNginx, writeBlueGreenApp, type Nginx } from './harness/nginx.js'
import {
  currentOf,
  historyOf,
  lastLog,
  lockExists,
  project,
  q,
  releasesOf,
  stopApp,
  type Project
} from './support.js'

let host: SshHost
let root: string
let nginx: Nginx
let ports: [number, number]
let p: Project

const stateOf = () => readFileSync(join(root, '.safe-deploy', 'active-port'), 'utf8')
const upstreamOf = () => readFileSync(nginx.upstreamFile, 'utf8')
const viaProxy = async () => (await httpGet(`${nginx.url}/`)).body.trim()
const pidOn = (port: number) => readPid(portPidFile(root, port))
const listening = async (port: number) =>
  (await httpGet(`http://127.0.0.1:${port}/health`, 1000)).status !== 0

/** A project deploying the blue-green fixture app behind `nginx`; `verify` replaces the default checks. */
function bgProject(verify?: Record<string, unknown>): Promise<Project> {
  return project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      env: { ...(c.env as Record<string, string>), HOST: '127.0.0.1' },
      stages: { build: 'echo built > BUILD_OK' },
      switch: {
        strategy: 'blue-green',
        ports,
        start: 'bin/start',
        stop: 'bin/stop',
        health: 'http://127.0.0.1:{port}/health',
        upstream_file: nginx.upstreamFile,
        upstream_template: 'server 127.0.0.1:{port};',
        proxy_reload: nginx.reloadCommand,
        drain: '500ms',
        timeout: '5s'
      },
      verify: verify ?? {
        http: { url: `${nginx.url}/`, expect_status: 200, retries: 10, interval: '200ms' },
        // what nginx serves is this release (the command runs inside the release dir)
        command: `test "$(curl -s --max-time 2 ${q(`${nginx.url}/`)})" = "version $(cat VERSION)"`
      }
    })
  })
}

beforeAll(async () => {
  host = await startSshd()
  root = host.root('ledger')
  const a = await freePort()
  let b = await freePort()
  while (b === a) b = await freePort()
  ports = [a, b]
  // nothing deployed yet: the upstream names a port where nothing listens (nginx answers 502)
  nginx = await startNginx({ initialPort: await freePort() })
  p = await bgProject()
})

afterAll(async () => {
  for (const port of ports ?? []) await stopApp(portPidFile(root, port))
  await nginx?.stop()
  await stopAll()
})

/** Requests through nginx, one every `everyMs`, until stop() or `max` requests; counts the failures. */
function load(url: string, everyMs = 20, max = 5000) {
  let stopped = false
  const failures: string[] = []
  const bodies = new Set<string>()
  let total = 0
  const done = (async () => {
    while (!stopped && total < max) {
      const t0 = Date.now()
      const r = await httpGet(url, 2000)
      total++
      if (r.status !== 200)
        failures.push(`${new Date().toISOString()} ${r.status || r.error} ${r.body.trim()}`)
      else bodies.add(r.body.trim())
      const wait = everyMs - (Date.now() - t0)
      if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
    }
  })()
  return {
    async stop() {
      stopped = true
      await done
      return { total, failures, bodies }
    }
  }
}

describe('blue-green over SSH behind nginx', () => {
  let v1: string
  let v2: string

  test('plan shows the blue-green steps in order', async () => {
    const r = await p.run(['plan'])
    expect(r.code).toBe(0)
    const labels = r.stdout
      .split('\n')
      .filter(l => l.startsWith('# '))
      .map(l => l.slice(2))
    const at = labels.indexOf('read blue-green state')
    expect(at).toBeGreaterThan(0)
    expect(labels.slice(at, at + 8)).toEqual([
      'read blue-green state',
      `stop port ${ports[0]}`,
      `start port ${ports[0]}`,
      `GET http://127.0.0.1:${ports[0]}/health`,
      `write upstream file ${nginx.upstreamFile}`,
      'proxy reload',
      expect.stringMatching(/^switch current to /),
      `record active port ${ports[0]}`
    ])
    // plan is a dry run of the real stages: verify runs before the old port stops, as in a deploy
    expect(labels.slice(at + 8, at + 11)).toEqual([
      `GET ${nginx.url}/`,
      'verify command',
      `after verify and 0.5 s of drain: stop port ${ports[1]}`
    ])
    expect(labels.filter(l => l.startsWith('switch current to '))).toHaveLength(1)
  })

  test('v1: starts on the first port, gated, nginx pointed at it, state and history have the port', async () => {
    expect((await httpGet(`${nginx.url}/`)).status).toBe(502)
    p.app = a => writeBlueGreenApp(join(p.dir, 'app'), a)
    p.app({ version: '1.0.0' })
    const r = await p.deploy(['--json'])
    expect(r.stderr).toContain('DEPLOYMENT SUCCESS')
    expect(r.code).toBe(0)
    v1 = (JSON.parse(r.stdout) as { release: string }).release
    expect(currentOf(root)).toBe(`releases/${v1}`)
    expect(upstreamOf()).toBe(`server 127.0.0.1:${ports[0]};\n`)
    expect(stateOf()).toBe(`${ports[0]} ${v1}\n`)
    expect(await viaProxy()).toBe('version 1.0.0')
    expect(isRunning(pidOn(ports[0]) ?? 0)).toBe(true)
    expect(await listening(ports[1])).toBe(false)
    expect(historyOf(root).at(-1)).toMatchObject({
      type: 'deploy',
      release: v1,
      status: 'success',
      port: ports[0]
    })
    const log = lastLog(p.logDir)
    expect(log).toContain(
      `no port of ${ports[0]}/${ports[1]} serves yet; starting releases/${v1} on port ${ports[0]}`
    )
    expect(log).toMatch(
      new RegExp(`port ${ports[0]} is healthy: GET http://127\\.0\\.0\\.1:${ports[0]}/health: HTTP 200`)
    )
    expect(log).toContain(`traffic -> port ${ports[0]} (proxy reloaded)`)
    expect(lockExists(root)).toBe(false)
  })

  test('v2: the other port; v1 drains and stops; current, state and history move', async () => {
    const v1Pid = pidOn(ports[0]) as number
    p.app({ version: '2.0.0' })
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(0)
    v2 = (JSON.parse(r.stdout) as { release: string }).release
    expect(v2).not.toBe(v1)
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(upstreamOf()).toBe(`server 127.0.0.1:${ports[1]};\n`)
    expect(stateOf()).toBe(`${ports[1]} ${v2}\n`)
    expect(await viaProxy()).toBe('version 2.0.0')
    expect(isRunning(v1Pid)).toBe(false)
    expect(existsSync(portPidFile(root, ports[0]))).toBe(false)
    expect(await listening(ports[0])).toBe(false)
    expect(isRunning(pidOn(ports[1]) ?? 0)).toBe(true)
    expect(historyOf(root).at(-1)).toMatchObject({
      release: v2,
      previous: v1,
      status: 'success',
      port: ports[1]
    })
    const log = lastLog(p.logDir)
    expect(log).toContain(
      `port ${ports[0]} serves releases/${v1}; starting releases/${v2} on port ${ports[1]}`
    )
    expect(log).toContain(`[cleanup]`)
    expect(log).toContain(`stopped port ${ports[0]} (releases/${v1})`)

    const rel = await p.run(['releases'])
    expect(rel.code).toBe(0)
    expect(rel.stdout).toMatch(new RegExp(`\\* ${v2} .*port ${ports[1]}`))
    expect(rel.stdout).toMatch(new RegExp(`  ${v1} .*port ${ports[0]}`))
  })

  test('the new port never gets healthy: exit 3, nginx still serves v2, upstream unchanged, port stopped', async () => {
    const before = { upstream: upstreamOf(), state: stateOf(), releases: releasesOf(root) }
    const v2Pid = pidOn(ports[1])
    p.app({ version: '3.0.0', healthy: false })
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(3)
    const result = JSON.parse(r.stdout) as { release: string; error: { stage: string; message: string } }
    expect(result.error.stage).toBe('switch')
    expect(result.error.message).toMatch(
      new RegExp(
        `port ${ports[0]} did not become healthy within 5 s: GET http://127\\.0\\.0\\.1:${ports[0]}/health from \\S+ last answered HTTP 500 "unhealthy 3\\.0\\.0"; stopped port ${ports[0]}, nothing live changed \\(port ${ports[1]} still serves\\)`
      )
    )
    expect(upstreamOf()).toBe(before.upstream)
    expect(stateOf()).toBe(before.state)
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(await viaProxy()).toBe('version 2.0.0')
    expect(pidOn(ports[1])).toBe(v2Pid)
    expect(await listening(ports[0])).toBe(false)
    expect(existsSync(portPidFile(root, ports[0]))).toBe(false)
    // nothing went live: the half-made release is removed
    expect(releasesOf(root)).toEqual(before.releases)
    expect(lastLog(p.logDir)).toMatch(/DEPLOYMENT FAILED at switch on \S+: .* Nothing live was changed/)
    expect(lockExists(root)).toBe(false)
  })

  test('healthy on its port but verify through nginx fails: exit 4, upstream flipped back, v2 serves', async () => {
    const before = { upstream: upstreamOf(), state: stateOf() }
    // a check that only the path through the proxy can answer: the served version
    const strict = await bgProject({
      http: { url: `${nginx.url}/`, contains: 'version 2.0.0', retries: 3, interval: '200ms' }
    })
    writeBlueGreenApp(join(strict.dir, 'app'), { version: '3.1.0' })
    const r = await strict.deploy(['--json'])
    process.chdir(p.dir)
    expect(r.code).toBe(4)
    const result = JSON.parse(r.stdout) as { release: string; status: string; error: { stage: string } }
    expect(result.status).toBe('rolled-back')
    expect(result.error.stage).toBe('verify')
    expect(upstreamOf()).toBe(before.upstream)
    expect(stateOf()).toBe(before.state)
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(await viaProxy()).toBe('version 2.0.0')
    expect(await listening(ports[0])).toBe(false)
    expect(releasesOf(root)).toContain(result.release)
    expect(historyOf(root).at(-1)).toMatchObject({
      release: result.release,
      status: 'rolled-back',
      bad: true,
      port: ports[0]
    })
    const log = lastLog(strict.logDir)
    expect(log).toMatch(/FAILED: health check GET http:\/\/127\.0\.0\.1:\d+\/ .* "version 3\.1\.0"/)
    expect(log).toContain(`traffic -> port ${ports[1]} (upstream file restored, proxy reloaded)`)
    expect(log).toContain(`stopped port ${ports[0]} (releases/${result.release})`)
  })

  test('manual rollback flips to v1 the blue-green way and stops v2 after the drain', async () => {
    const v2Pid = pidOn(ports[1]) as number
    const r = await p.run(['rollback', '--json'])
    expect(r.code).toBe(0)
    const result = JSON.parse(r.stdout) as { release: string }
    expect(result.release).toBe(v1)
    expect(currentOf(root)).toBe(`releases/${v1}`)
    expect(upstreamOf()).toBe(`server 127.0.0.1:${ports[0]};\n`)
    expect(stateOf()).toBe(`${ports[0]} ${v1}\n`)
    expect(await viaProxy()).toBe('version 1.0.0')
    expect(isRunning(v2Pid)).toBe(false)
    expect(await listening(ports[1])).toBe(false)
    expect(historyOf(root).at(-1)).toMatchObject({
      type: 'rollback',
      release: v1,
      from: v2,
      status: 'success',
      port: ports[0]
    })
  })

  test('the load loop sees downtime when there is some (the detector works)', async () => {
    const pidFile = portPidFile(root, ports[0])
    const l = load(`${nginx.url}/`)
    await new Promise(resolve => setTimeout(resolve, 300))
    await stopApp(pidFile)
    await new Promise(resolve => setTimeout(resolve, 300))
    host.run(
      `cd ${q(join(root, 'current'))} && PORT=${ports[0]} HOST=127.0.0.1 SAFE_DEPLOY_SHARED=${q(join(root, 'shared'))} bin/start`
    )
    for (let i = 0; i < 50 && (await viaProxy()) !== 'version 1.0.0'; i++)
      await new Promise(r => setTimeout(r, 100))
    const { total, failures } = await l.stop()
    console.log(`control (app stopped for ~300 ms): ${failures.length}/${total} requests failed`)
    expect(failures.length).toBeGreaterThan(0)
    expect(await viaProxy()).toBe('version 1.0.0')
  })

  test('zero downtime: no request through nginx fails during two deploys and a rollback', async () => {
    const l = load(`${nginx.url}/`)
    await new Promise(resolve => setTimeout(resolve, 200))
    p.app({ version: '4.0.0' })
    const d4 = await p.deploy()
    p.app({ version: '5.0.0' })
    const d5 = await p.deploy()
    const rb = await p.run(['rollback'])
    await new Promise(resolve => setTimeout(resolve, 200))
    const { total, failures, bodies } = await l.stop()
    console.log(
      `zero-downtime: ${failures.length}/${total} requests failed during 2 blue-green deploys and 1 rollback${failures.length ? `:\n${failures.slice(0, 20).join('\n')}` : ''}`
    )
    expect([d4.code, d5.code, rb.code]).toEqual([0, 0, 0])
    expect(failures).toEqual([])
    expect(total).toBeGreaterThan(50)
    // traffic really moved while we watched: every version answered at some point
    expect([...bodies].sort()).toEqual(['version 1.0.0', 'version 4.0.0', 'version 5.0.0'])
    expect(await viaProxy()).toBe('version 4.0.0')
    // only the live colour runs
    const live = Number(stateOf().split(' ')[0])
    const idle = live === ports[0] ? ports[1] : ports[0]
    expect(await listening(live)).toBe(true)
    expect(await listening(idle)).toBe(false)
  })
})
