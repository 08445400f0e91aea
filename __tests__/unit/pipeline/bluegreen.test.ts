/**
 * The blue-green strategy's decisions, run for real on a local host with /bin/sh: which port is idle, what
 * is written, what undo restores, what retire stops. The "app" is two HTTP servers in this process, one per
 * port, answering 200 while a file `up-<port>` exists (written by `start`, removed by `stop`); the "proxy"
 * is a reload command that copies the upstream file to `proxy.conf`. Every start/stop/reload is logged to
 * `events` with the release dir it ran in.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { basename, join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from '@jest/globals'
import { Layout } from '../../../src/commands/layout.js'
import { configSchema, type RawConfig } from '../../../src/config/schema.js'
import type { ResolvedHost } from '../../../src/config/load.js'
import { blueGreenStrategy } from '../../../src/pipeline/bluegreen.js'
import { strategyFor } from '../../../src/pipeline/switch.js'
import type { HostSession, RunContext } from '../../../src/host/context.js'
import { DeployLog, type Reporter } from '../../../src/report/log.js'
import { Redactor } from '../../../src/report/redact.js'
import { LocalTransport } from '../../../src/transport/local.js'
import { cleanup, tempDir } from '../helpers/shell.js'

const A = '20261121T100000Z-aaaaaaa'
const B = '20261121T110000Z-bbbbbbb'

let servers: http.Server[] = []
let ports: [number, number]
let dir: string
let root: string
let layout: Layout
let upstream: string
let lines: string[]

/** Collects messages without the `[stage] [host] ` prefix. */
const bare = (m: string) => m.replace(/^\[[\w-]+\] (\[local\] )?/, '')
const quiet = (into: string[]): Reporter => ({
  info: m => void into.push(bare(m)),
  warn: m => void into.push(`WARN ${bare(m)}`),
  error: m => void into.push(`ERROR ${bare(m)}`),
  startGroup: () => {},
  endGroup: () => {}
})

beforeAll(async () => {
  const up = (port: number) => existsSync(join(dir, `up-${port}`))
  for (let i = 0; i < 2; i++) {
    const server = http.createServer((req, res) => {
      const port = (server.address() as AddressInfo).port
      res.writeHead(up(port) ? 200 : 503, { connection: 'close' })
      res.end(up(port) ? `ok ${readFileSync(join(dir, `up-${port}`), 'utf8').trim()}` : 'down')
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    servers.push(server)
  }
  ports = servers.map(s => (s.address() as AddressInfo).port) as [number, number]
})

afterAll(async () => {
  await Promise.all(servers.map(s => new Promise(resolve => s.close(resolve))))
  servers = []
})

beforeEach(() => {
  dir = tempDir('bluegreen-strategy')
  root = join(dir, 'srv')
  layout = new Layout(root)
  for (const r of [A, B]) {
    mkdirSync(join(layout.release(r), 'bin'), { recursive: true })
    writeFileSync(join(layout.release(r), 'VERSION'), `${r}\n`)
  }
  mkdirSync(layout.meta, { recursive: true })
  mkdirSync(join(dir, 'conf'))
  upstream = join(dir, 'conf', 'upstream.conf')
  lines = []
})
afterEach(() => cleanup(dir))

const events = () =>
  existsSync(join(dir, 'events'))
    ? readFileSync(join(dir, 'events'), 'utf8').trim().split('\n').filter(Boolean)
    : []

function context(
  overrides: Partial<Extract<NonNullable<RawConfig['switch']>, { strategy: 'blue-green' }>> = {}
): RunContext {
  const ev = join(dir, 'events')
  const config = configSchema.parse({
    app: 'shop',
    path: root,
    hosts: [{ local: true }],
    switch: {
      strategy: 'blue-green',
      ports,
      // `broken` in VERSION: the process "starts" but never answers 200
      start: `grep -q broken VERSION || basename "$PWD" > ${dir}/up-{port}; echo "start {port} $PORT $(basename "$PWD")" >> ${ev}`,
      stop: `rm -f ${dir}/up-{port}; echo "stop {port} $(basename "$PWD")" >> ${ev}`,
      upstream_file: upstream,
      proxy_reload: `cp ${upstream} ${dir}/proxy.conf && echo "reload $(cat ${upstream})" >> ${ev}`,
      drain: '50ms',
      timeout: '1s',
      ...overrides
    }
  } satisfies RawConfig)
  return {
    config,
    log: new DeployLog(undefined, quiet(lines), new Redactor([])),
    signal: new AbortController().signal,
    sessions: [],
    verbose: false,
    startedAt: new Date(),
    actor: { who: 'test' }
  } as unknown as RunContext
}

function session(current?: string): HostSession {
  const host: ResolvedHost = {
    name: 'local',
    kind: 'local',
    address: '127.0.0.1',
    port: 22,
    user: 'root',
    path: root,
    primary: true,
    roles: []
  }
  return { host, t: new LocalTransport('local'), layout, current, releases: [A, B] }
}

const state = () =>
  existsSync(join(layout.meta, 'active-port'))
    ? readFileSync(join(layout.meta, 'active-port'), 'utf8')
    : undefined
const file = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : undefined)
const current = () => {
  try {
    return basename(readFileSync(join(root, 'current', 'VERSION'), 'utf8').trim())
  } catch {
    return undefined
  }
}

describe('blue-green strategy', () => {
  test('first deploy: first port, gate, flip, state; no old port to retire; methods work detached', async () => {
    const ctx = context()
    const s = session()
    expect(strategyFor(ctx).name).toBe('blue-green')
    const { activate, retire, wentLive, port } = blueGreenStrategy()
    await activate(ctx, s, A, 'switch')
    expect(wentLive(s)).toBe(true)
    expect(port?.(s)).toBe(ports[0])
    expect(file(upstream)).toBe(`server 127.0.0.1:${ports[0]};\n`)
    expect(file(join(dir, 'proxy.conf'))).toBe(`server 127.0.0.1:${ports[0]};\n`)
    expect(state()).toBe(`${ports[0]} ${A}\n`)
    expect(current()).toBe(A)
    await retire?.(ctx, s, A)
    expect(events()).toEqual([
      `stop ${ports[0]} ${A}`,
      `start ${ports[0]} ${ports[0]} ${A}`,
      `reload server 127.0.0.1:${ports[0]};`
    ])
  })

  test('second deploy: the other port; retire stops the old one inside the old release', async () => {
    const ctx = context()
    writeFileSync(join(layout.meta, 'active-port'), `${ports[0]} ${A}\n`)
    writeFileSync(join(dir, `up-${ports[0]}`), A)
    writeFileSync(upstream, `server 127.0.0.1:${ports[0]};\n`)
    const s = session(A)
    const bg = blueGreenStrategy()
    await bg.activate(ctx, s, B, 'switch')
    expect(file(upstream)).toBe(`server 127.0.0.1:${ports[1]};\n`)
    expect(state()).toBe(`${ports[1]} ${B}\n`)
    expect(existsSync(join(dir, `up-${ports[0]}`))).toBe(true) // still running until retire
    await bg.retire?.(ctx, s, B)
    expect(existsSync(join(dir, `up-${ports[0]}`))).toBe(false)
    expect(events()).toEqual([
      `stop ${ports[1]} ${B}`,
      `start ${ports[1]} ${ports[1]} ${B}`,
      `reload server 127.0.0.1:${ports[1]};`,
      `stop ${ports[0]} ${A}`
    ])
  })

  test('no state file: the port the upstream file names counts as live (moving from symlink)', async () => {
    const ctx = context({ upstream_template: 'server 10.0.0.1:{port} max_fails=0;' })
    writeFileSync(upstream, `# hand-written\nserver 10.0.0.1:${ports[1]};\n`)
    const s = session(A)
    const bg = blueGreenStrategy()
    await bg.activate(ctx, s, B, 'switch')
    expect(bg.port?.(s)).toBe(ports[0])
    expect(file(upstream)).toBe(`server 10.0.0.1:${ports[0]} max_fails=0;\n`)
    expect(lines).toContain(
      `blue-green: port ${ports[1]} serves releases/${A} (from the upstream file); starting releases/${B} on port ${ports[0]}`
    )
    // undo gives the hand-written file back byte for byte, and no state file (there was none)
    await bg.restore(ctx, s, B, 'rollback')
    expect(file(upstream)).toBe(`# hand-written\nserver 10.0.0.1:${ports[1]};\n`)
    expect(state()).toBeUndefined()
    expect(current()).toBe(A)
  })

  test('never healthy: the new port is stopped, nothing written, not live, the error says so', async () => {
    const ctx = context()
    writeFileSync(join(layout.meta, 'active-port'), `${ports[0]} ${A}\n`)
    writeFileSync(upstream, `server 127.0.0.1:${ports[0]};\n`)
    writeFileSync(join(layout.release(B), 'VERSION'), 'broken\n')
    const s = session(A)
    const bg = blueGreenStrategy()
    await expect(bg.activate(ctx, s, B, 'switch')).rejects.toThrow(
      new RegExp(
        `^port ${ports[1]} did not become healthy within 1 s: GET http://127\\.0\\.0\\.1:${ports[1]}/health from local last answered HTTP 503 "down"; stopped port ${ports[1]}, nothing live changed \\(port ${ports[0]} still serves\\)$`
      )
    )
    expect(bg.wentLive(s)).toBe(false)
    expect(file(upstream)).toBe(`server 127.0.0.1:${ports[0]};\n`)
    expect(state()).toBe(`${ports[0]} ${A}\n`)
    expect(events()).toEqual([
      `stop ${ports[1]} ${B}`,
      `start ${ports[1]} ${ports[1]} ${B}`,
      `stop ${ports[1]} ${B}`
    ])
    // undo after that has nothing left to do
    await bg.restore(ctx, s, B, 'rollback')
    expect(events()).toHaveLength(3)
  })

  test('undo after the flip: an old port that died is started again before traffic goes back to it', async () => {
    const ctx = context()
    writeFileSync(join(layout.meta, 'active-port'), `${ports[0]} ${A}\n`)
    writeFileSync(join(dir, `up-${ports[0]}`), A)
    writeFileSync(upstream, `server 127.0.0.1:${ports[0]};\n`)
    const s = session(A)
    const bg = blueGreenStrategy()
    await bg.activate(ctx, s, B, 'switch')
    writeFileSync(join(dir, 'events'), '')
    const { restore } = bg
    await restore(ctx, s, B, 'rollback')
    expect(bg.wentLive(s)).toBe(true) // for the re-verify of the previous release after undo
    expect(file(upstream)).toBe(`server 127.0.0.1:${ports[0]};\n`)
    expect(state()).toBe(`${ports[0]} ${A}\n`)
    expect(current()).toBe(A)
    expect(existsSync(join(dir, `up-${ports[1]}`))).toBe(false)
    expect(events()).toEqual([`reload server 127.0.0.1:${ports[0]};`, `stop ${ports[1]} ${B}`])

    // same again, but the old port is down by the time of the undo
    const bg2 = blueGreenStrategy()
    await bg2.activate(ctx, s, B, 'switch')
    writeFileSync(join(dir, 'events'), '')
    // the old process crashed while the new release was being verified
    rmSync(join(dir, `up-${ports[0]}`))
    await bg2.restore(ctx, s, B, 'rollback')
    expect(
      lines.some(l =>
        l.startsWith(`WARN port ${ports[0]} answers HTTP 503 "down"; starting releases/${A} on it again`)
      )
    ).toBe(true)
    expect(events()).toEqual([
      `start ${ports[0]} ${ports[0]} ${A}`,
      `reload server 127.0.0.1:${ports[0]};`,
      `stop ${ports[1]} ${B}`
    ])
    expect(file(join(dir, `up-${ports[0]}`))).toBe(`${A}\n`)
  })

  test('undo of a first deploy: nothing to flip back to; current and state removed, the new port stopped', async () => {
    const ctx = context()
    const s = session()
    const bg = blueGreenStrategy()
    await bg.activate(ctx, s, A, 'switch')
    await bg.restore(ctx, s, A, 'rollback')
    expect(file(upstream)).toBe(`server 127.0.0.1:${ports[0]};\n`)
    expect(state()).toBeUndefined()
    expect(existsSync(join(root, 'current'))).toBe(false)
    expect(existsSync(join(dir, `up-${ports[0]}`))).toBe(false)
    expect(lines).toContain(
      `WARN the upstream file did not exist before this run and nothing served before: left ${upstream} as it is`
    )
  })

  test('a state file from another pair of ports is ignored with a warning', async () => {
    const ctx = context()
    writeFileSync(join(layout.meta, 'active-port'), `1 ${A}\n`)
    const s = session(A)
    const bg = blueGreenStrategy()
    await bg.activate(ctx, s, B, 'switch')
    expect(bg.port?.(s)).toBe(ports[0])
    expect(lines).toContain(
      `WARN the state file names port "1", not one of ${ports[0]} and ${ports[1]}; ignored`
    )
  })

  test('retire: a failing stop is an error for cleanup to report; stages.restart set: a warning', async () => {
    const ctx = context({ stop: 'exit 3' })
    ;(ctx.config.stages as { restart?: string }).restart = 'bin/restart'
    writeFileSync(join(layout.meta, 'active-port'), `${ports[0]} ${A}\n`)
    const s = session(A)
    const bg = blueGreenStrategy()
    await bg.activate(ctx, s, B, 'switch')
    expect(lines).toContain(
      'WARN stages.restart is not used by blue-green (switch.start and switch.stop are)'
    )
    expect(lines).toContain(
      `WARN clearing port ${ports[1]} before the start: stop for port ${ports[1]} exited 3`
    )
    await expect(bg.retire?.(ctx, s, B)).rejects.toThrow(
      `could not stop port ${ports[0]} (releases/${A}): stop for port ${ports[0]} exited 3`
    )
  })
})
