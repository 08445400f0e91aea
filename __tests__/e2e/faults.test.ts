/**
 * The fault matrix, end to end against a real sshd: whatever fails, the user is back on a working release,
 * the lock is released (or the run says why not and what to do), and the next deploy goes through.
 *
 * Every case asserts: the exit code, the message (stage + host), where `current` points, what the app answers
 * over HTTP, the lock; then that the NEXT deploy finds a consistent state and succeeds (exit 0).
 * docs/failures.md is the user-facing table of these cases; keep the two in step.
 *
 * Faults are injected at known moments with:
 * - pause points (harness/pause.ts): a hook (test, build, restart, verify command; later migrate) that waits
 *   while the test cuts the network or signals the CLI, so the fault lands inside that stage;
 * - a TCP proxy in front of sshd (harness/tcpproxy.ts): cut every connection, or refuse new ones;
 * - a stderr line watcher (harness/cliproc.ts cliWatching) for faults between two stages;
 * - the CLI as a child process (harness/cliproc.ts spawnCli) for SIGINT/SIGTERM.
 *
 * Cases with a database (migration fails half way; migration ok but the new code broken) belong here too:
 * setup() takes a config function, so a case can add `backup:` and a migrate command with a pause point,
 * and expectServing() is where a database checksum assertion goes.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fastShell, startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { isRunning, readPid } from './harness/app.js'
import { startTcpProxy, type TcpProxy } from './harness/tcpproxy.js'
import { pausePoint, type PausePoint } from './harness/pause.js'
import { cliWatching, expectExit, resultOf, spawnCli, type CliOutcome } from './harness/cliproc.js'
import {
  answer,
  currentOf,
  historyOf,
  lastLog,
  lockExists,
  project,
  releasesOf,
  stopApp,
  type Project
} from './support.js'

let host: SshHost
const pidFiles: string[] = []
const cleanups: (() => Promise<void> | void)[] = []

beforeAll(async () => {
  host = await startSshd({ extraConfig: fastShell() })
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  for (const c of cleanups.reverse()) await c()
  await stopAll()
})

type Config = Record<string, unknown>

interface Case {
  p: Project
  root: string
  /** The host's name in messages: address:port (of the proxy when there is one). */
  hostName: string
  pidFile: string
}

/**
 * A project deploying to `host` (through `proxy` when given) with small timeouts and retries, so that each
 * failing case takes seconds: 6 health attempts 250 ms apart, 1 connect retry.
 */
async function setup(name: string, opts: { proxy?: TcpProxy; config?: (c: Config) => Config } = {}) {
  const root = host.root(name)
  const { proxy } = opts
  const p = await project({
    hosts: [host],
    root,
    envExtra: proxy ? { KNOWN_HOSTS: proxy.knownHostsLineFor(host.knownHostsLine) } : undefined,
    config: base => {
      const c: Config = {
        ...base,
        ssh: {
          ...(base.ssh as Config),
          connect_retries: 1,
          connect_timeout: '3s',
          keepalive_interval: '1s'
        },
        verify: {
          http: { ...((base.verify as Config).http as Config), retries: 6, interval: '250ms' }
        }
      }
      if (proxy) c.hosts = [{ address: proxy.host, port: proxy.port, user: 'root' }]
      return opts.config ? opts.config(c) : c
    }
  })
  const pidFile = join(root, 'shared', 'app.pid')
  pidFiles.push(pidFile)
  const hostName = proxy ? `${proxy.host}:${proxy.port}` : `${host.address}:${host.port}`
  return { p, root, hostName, pidFile } satisfies Case
}

/** Deploys `version` and expects success; returns the release id. */
async function deployOk(c: Case, version: string): Promise<string> {
  c.p.app({ version })
  const r = await c.p.deploy(['--json'])
  expectExit(r, 0)
  const release = resultOf(r).release as string
  await expectServing(c, release, version)
  return release
}

/** `current` points at `release`, the app answers as `version` (and is healthy), no lock is left. */
async function expectServing(c: Case, release: string, version: string): Promise<void> {
  expect(currentOf(c.root)).toBe(`releases/${release}`)
  expect(await answer(c.p.port)).toBe(`version ${version}`)
  expect(await answer(c.p.port, '/health')).toBe(`ok ${version}`)
  expect(lockExists(c.root)).toBe(false)
}

/** The next deploy finds a consistent state and goes through. */
async function nextRunProceeds(c: Case, version: string): Promise<string> {
  process.chdir(c.p.dir)
  return deployOk(c, version)
}

/** The failure as the --json result and the log's verdict line state it. */
function expectFailure(r: CliOutcome, c: Case, stage: string, verdict: RegExp, host = c.hostName) {
  const res = resultOf(r)
  expect(res.error).toMatchObject({ stage, host })
  expect(res.verdict).toMatch(verdict)
  expect(res.verdict).toContain(`FAILED at ${stage} on ${host}: `)
  const log = lastLog(c.p.logDir)
  expect(log).toContain(res.verdict.split('\n')[0])
  return res
}

/** No release dir other than these is left on the host, and no half-made `current` symlink. */
function expectReleases(c: Case, releases: string[]) {
  expect(releasesOf(c.root)).toEqual([...releases].sort())
  expect(readdirSync(c.root).filter(f => f.startsWith('.current.'))).toEqual([])
}

describe('the new release is broken', () => {
  test.each([
    ['crashAfterMs: 0', (c: Case) => c.p.app({ version: '2.0.0', crashAfterMs: 0 })],
    [
      'a server.js that exits 1',
      (c: Case) => {
        c.p.app({ version: '2.0.0' })
        writeFileSync(join(c.p.dir, 'app', 'server.js'), "console.error('boom'); process.exit(1)\n")
      }
    ]
  ])('1. the health check never passes (%s): exit 4, the previous release serves', async (label, breakIt) => {
    const c = await setup(`never-healthy-${label.includes('crash') ? 'a' : 'b'}`)
    const v1 = await deployOk(c, '1.0.0')
    breakIt(c)
    const r = await c.p.deploy(['--json'])
    expectExit(r, 4)
    const res = expectFailure(r, c, 'verify', /ROLLED BACK/)
    expect(res.error?.message).toMatch(
      /health check GET http:\/\/127\.0\.0\.1:\d+\/health from \S+ failed after 6 attempts: expected HTTP 200, last answer no answer/
    )
    expect(res.status).toBe('rolled-back')
    expect(res.rolledBack).toBe(true)
    await expectServing(c, v1, '1.0.0')
    // the failed release stays for inspection, marked bad
    expectReleases(c, [v1, res.release as string])
    expect(historyOf(c.root).at(-1)).toMatchObject({
      release: res.release,
      status: 'rolled-back',
      bad: true
    })
    expect(lastLog(c.p.logDir)).toMatch(/\[rollback\] .*previous release verified healthy/)
    await nextRunProceeds(c, '3.0.0')
  })

  test('2. healthy at first, crashes within verify.window: exit 4, the previous release serves', async () => {
    const c = await setup('crash-in-window', {
      config: cfg => ({
        ...cfg,
        verify: {
          ...(cfg.verify as Config),
          window: '3s',
          // the whole file (not only since the run started): fail_on must not match the old traceback later
          logs: { command: 'cat "$SAFE_DEPLOY_SHARED/logs/app.log"', fail_on: ['no such line'] }
        }
      })
    })
    const v1 = await deployOk(c, '1.0.0')
    // up in well under a second, gone 2.5 s after start: after the first checks, before the second
    c.p.app({ version: '2.0.0', crashAfterMs: 2500 })
    const r = await c.p.deploy(['--json'])
    expectExit(r, 4)
    const res = expectFailure(r, c, 'verify', /ROLLED BACK/)
    // says it had passed and then stopped, with the app's traceback from the logs
    expect(res.error?.message).toMatch(
      /the app passed its checks, then stopped answering within verify\.window \(3 s\): .*failed after 1 attempt: expected HTTP 200, last answer no answer/
    )
    expect(res.error?.message).toContain('RuntimeError: lost the database connection')
    const log = lastLog(c.p.logDir)
    // it did pass first, then watched, then failed
    expect(log).toMatch(/\[verify\] .*GET http:\S+: HTTP 200 \(attempt \d\/6\)/)
    expect(log).toContain('checks passed; watching for 3 s before checking again')
    await expectServing(c, v1, '1.0.0')
    await nextRunProceeds(c, '3.0.0')
  })

  test('7. the host kills the app after the switch, before verify: exit 4, previous release restarted', async () => {
    const c = await setup('killed-before-verify')
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    let killed: number | undefined
    const r = await cliWatching(['deploy', '--json', '--config', c.p.configFile], c.p.env, line => {
      if (line !== '== verify' || killed) return
      // the OOM killer, an operator, a crash: the new app is gone before the first health check
      killed = readPid(c.pidFile)
      if (!killed) throw new Error('no pid file')
      process.kill(killed, 'SIGKILL')
      const deadline = Date.now() + 5000
      while (isRunning(killed) && Date.now() < deadline) {
        /* wait for the kill to land before the run goes on */
      }
    })
    expect(killed).toBeDefined()
    expectExit(r, 4)
    const res = expectFailure(r, c, 'verify', /ROLLED BACK/)
    expect(res.error?.message).toContain('last answer no answer')
    await expectServing(c, v1, '1.0.0')
    expect(readPid(c.pidFile)).not.toBe(killed)
    await nextRunProceeds(c, '3.0.0')
  })
})

describe('the SSH connection is cut', () => {
  let proxy: TcpProxy
  beforeAll(async () => {
    proxy = await startTcpProxy({ address: host.address, port: host.port })
    cleanups.push(() => proxy.close())
  })

  test('5a. during the upload: reconnects to clean up, exit 3, nothing live changed', async () => {
    const c = await setup('cut-upload', { proxy })
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    // 4 MiB that gzip cannot shrink: the upload takes many packets; the cut lands after the first MiB
    mkdirSync(join(c.p.dir, 'app', 'assets'), { recursive: true })
    writeFileSync(join(c.p.dir, 'app', 'assets', 'blob.bin'), randomBytes(4 * 1024 * 1024))
    const cuts = proxy.cuts
    let cutting: Promise<number> | undefined
    const r = await cliWatching(['deploy', '--json', '--config', c.p.configFile], c.p.env, line => {
      if (line === '== deploy') cutting = proxy.cutAfterBytes(1024 * 1024)
    })
    expect(await cutting).toBeGreaterThan(0)
    expect(proxy.cuts).toBeGreaterThan(cuts)
    expectExit(r, 3)
    const res = expectFailure(r, c, 'deploy', /Nothing live was changed/)
    expect(res.error?.message).toMatch(/^upload on 127\.0\.0\.1:\d+: /)
    const log = lastLog(c.p.logDir)
    expect(log).toContain('the SSH connection was lost; reconnecting')
    expect(log).toContain(`removed the unfinished release ${res.release}`)
    expectReleases(c, [v1])
    await expectServing(c, v1, '1.0.0')
    rmSync(join(c.p.dir, 'app', 'assets'), { recursive: true })
    await nextRunProceeds(c, '3.0.0')
  })

  test('5b. during the switch (restart hook running): reconnects, rolls back, exit 4; the cut-off hook does not go on', async () => {
    const restart = pausePoint(tempDir('marks-'), 'restart')
    const c = await setup('cut-switch', {
      proxy,
      // the hook is cut off before it restarts the app: left running on the host, it would start v2
      // after the rollback restarted v1
      config: cfg => ({
        ...cfg,
        stages: { ...(cfg.stages as Config), restart: `${restart.shell}; bin/restart` }
      })
    })
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    restart.arm()
    const run = c.p.deploy(['--json'])
    await restart.reached()
    expect(proxy.cut()).toBeGreaterThan(0)
    const r = await run
    restart.release()
    expectExit(r, 4)
    const res = expectFailure(r, c, 'switch', /ROLLED BACK/)
    expect(res.error?.message).toMatch(
      /^restart on 127\.0\.0\.1:\d+: connection to \S+ closed before the command ended$/
    )
    const log = lastLog(c.p.logDir)
    expect(log).toContain(`[rollback] [${c.hostName}] the SSH connection was lost; reconnecting`)
    expect(log).toContain(`current -> releases/${v1} (restored)`)
    // the hook's session died with the connection: it never goes on to restart v2
    await new Promise(done => setTimeout(done, 1500))
    expect(restart.passed()).toBe(false)
    await expectServing(c, v1, '1.0.0')
    await nextRunProceeds(c, '3.0.0')
  })

  test("5c. during the switch, and the host stays unreachable: exit 5 with each host's state; the next run reports the lock", async () => {
    const restart = pausePoint(tempDir('marks-'), 'restart')
    const c = await setup('cut-unreachable', {
      proxy,
      config: cfg => ({
        ...cfg,
        stages: { ...(cfg.stages as Config), restart: `bin/restart; ${restart.shell}` }
      })
    })
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    restart.arm()
    const run = c.p.deploy(['--json'])
    await restart.reached()
    proxy.refuse()
    proxy.cut()
    let r: CliOutcome
    try {
      r = await run
    } finally {
      proxy.accept()
      restart.release()
    }
    expectExit(r, 5)
    const res = expectFailure(r, c, 'switch', /ROLLBACK FAILED: undo of switch: /)
    const v2 = res.release as string
    expect(res.status).toBe('failed')
    const unreachable = `unreachable \\(cannot connect to 127\\.0\\.0\\.1:\\d+: [^)]+\\), so what it serves is unknown`
    const note = new RegExp(
      `^${unreachable}; before this run it served releases/${v1}; ` +
        `this run switched it to releases/${v2}, then was switching it back to releases/${v1}$`
    )
    expect(res.hostStates).toEqual([
      { host: c.hostName, reachable: false, note: expect.stringMatching(note) }
    ])
    const log = lastLog(c.p.logDir)
    expect(log).toMatch(new RegExp(`\\[finish\\] \\[${c.hostName}\\] state: ${unreachable}; before this run`))
    expect(log).toContain('could not release the lock')
    expect(log).toContain('run `safe-deploy lock release`')
    // what the host really looks like: switched to v2 (restarted), the dead run's lock still there
    expect(currentOf(c.root)).toBe(`releases/${v2}`)
    expect(await answer(c.p.port)).toBe('version 2.0.0')
    expect(lockExists(c.root)).toBe(true)

    // the network is back: the next run is refused by the dead run's lock, and says who holds it and what to do
    c.p.app({ version: '3.0.0' })
    const next = await c.p.deploy(['--json'])
    expectExit(next, 3)
    expect(resultOf(next).error).toMatchObject({ stage: 'preflight', host: c.hostName })
    expect(resultOf(next).error?.message).toMatch(
      /^another deploy holds the lock on \S+: root@\S+ running `deploy` from \S+ since .*, expires .*\. Wait for it to finish; if that run is dead, run `safe-deploy lock release`$/
    )
    expect(currentOf(c.root)).toBe(`releases/${v2}`)
    // what the user does (docs/failures.md): look, release the dead run's lock, deploy again
    const st = await c.p.run(['status'])
    expect(st.stdout).toContain(`current ${v2}, `)
    expect(st.stdout).toMatch(/lock: held by root@/)
    const rel = await c.p.run(['lock', 'release'])
    expect(rel.stdout).toMatch(/^released the lock on \S+ held by root@/)
    await nextRunProceeds(c, '3.0.0')
  })
})

describe('the CI job is cancelled (SIGINT, then SIGTERM after 7.5 s)', () => {
  const cases: [string, number][] = [
    ['preflight', 3],
    ['test', 3],
    ['deploy', 3],
    ['switch', 4],
    ['verify', 4]
  ]
  test.each(cases)('6. during %s: exit %d, consistent state, lock released', async (stage, code) => {
    const marks = tempDir('marks-')
    const pause: Record<string, PausePoint> = {
      test: pausePoint(marks, 'test'),
      deploy: pausePoint(marks, 'build'),
      switch: pausePoint(marks, 'restart'),
      verify: pausePoint(marks, 'verify')
    }
    const c = await setup(`signal-${stage}`, {
      config: cfg => ({
        ...cfg,
        stages: {
          test: pause.test?.shell,
          // after the pause: output written by absolute path, as a build that is not killed would write it
          build: `echo built > BUILD_OK; ${pause.deploy?.shell}; mkdir -p "$SAFE_DEPLOY_RELEASE_PATH/late"`,
          // before the pause: nothing; after it: the restart that must not happen once we were interrupted
          restart: `${pause.switch?.shell}; bin/restart`
        },
        verify: { ...(cfg.verify as Config), command: pause.verify?.shell }
      })
    })
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    const point = pause[stage]
    point?.arm()
    const proc = spawnCli(['deploy', '--json', '--config', c.p.configFile], c.p.env, c.p.dir)
    await proc.line(new RegExp(`^== ${stage}$`))
    if (point) await point.reached()
    const cancel = await proc.cancel()
    point?.release()
    const r = await proc.exited
    expect(r.signal).toBeNull()
    expectExit(r, code)
    // a cancelled GitHub job is killed 10 s after the SIGINT: the undo must be done by then
    expect(cancel.exitAfterMs).toBeLessThan(7500)
    expect(r.stderr).toContain('SIGINT received; stopping and undoing what this run changed')
    const res = expectFailure(
      r,
      c,
      stage,
      code === 4 ? /ROLLED BACK/ : /Nothing live was changed/,
      stage === 'test' ? 'runner' : c.hostName
    )
    expect(res.error?.message).toMatch(/^interrupted/)
    // an interrupted hook must not go on running on the host: give it time to, then look
    await new Promise(done => setTimeout(done, 1500))
    expect(point?.passed() ?? false).toBe(false)
    await expectServing(c, v1, '1.0.0')
    if (code === 3) expectReleases(c, [v1])
    else expectReleases(c, [v1, res.release as string])
    await nextRunProceeds(c, '3.0.0')
  })

  test('6. SIGTERM 7.5 s after the SIGINT, while the rollback still runs: the rollback finishes, exit 4', async () => {
    const marks = tempDir('marks-')
    const verify = pausePoint(marks, 'verify')
    const restart = pausePoint(marks, 'restart')
    const c = await setup('signal-during-undo', {
      config: cfg => ({
        ...cfg,
        stages: { ...(cfg.stages as Config), restart: `${restart.shell}; bin/restart` },
        verify: { ...(cfg.verify as Config), command: verify.shell }
      })
    })
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    verify.arm()
    const proc = spawnCli(['deploy', '--json', '--config', c.p.configFile], c.p.env, c.p.dir)
    await verify.reached()
    // the rollback's restart of v1 will hang until after the SIGTERM
    restart.arm()
    const cancel = await proc.cancel({ onSigterm: () => setTimeout(() => restart.release(), 500) })
    const r = await proc.exited
    expect(cancel.sigterm).toBe(true)
    expect(r.stderr).toContain(
      'SIGTERM received; stopping and undoing what this run changed (already stopping)'
    )
    expectExit(r, 4)
    expect(restart.passed()).toBe(true)
    const res = expectFailure(r, c, 'verify', /ROLLED BACK/)
    expect(res.error?.message).toMatch(/^interrupted/)
    await expectServing(c, v1, '1.0.0')
    await nextRunProceeds(c, '3.0.0')
  })
})

describe('the disk fills up', () => {
  let mounted: string | undefined
  afterAll(() => {
    if (!mounted) return
    const r = spawnSync('umount', [mounted], { encoding: 'utf8' })
    if (r.status !== 0) spawnSync('umount', ['-l', mounted])
  })

  test('8. releases/ on a 2 MiB tmpfs, a 3 MiB upload: exit 3, "No space left on device", nothing left behind', async () => {
    const c = await setup('disk-full')
    const releases = join(c.root, 'releases')
    mkdirSync(releases, { recursive: true })
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', releases], { encoding: 'utf8' })
    if (m.status !== 0) {
      throw new Error(
        `cannot mount a 2 MiB tmpfs on ${releases} (the disk-full case needs root and mount): ${m.stderr || m.error?.message}`
      )
    }
    mounted = releases
    // stop the app before afterAll unmounts: its working directory is on the tmpfs
    cleanups.push(() => stopApp(c.pidFile))
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    mkdirSync(join(c.p.dir, 'app', 'assets'), { recursive: true })
    writeFileSync(join(c.p.dir, 'app', 'assets', 'blob.bin'), randomBytes(3 * 1024 * 1024))
    const r = await c.p.deploy(['--json'])
    expectExit(r, 3)
    const res = expectFailure(r, c, 'deploy', /Nothing live was changed/)
    expect(res.error?.message).toMatch(/^upload failed on \S+ \(exit 2\): /)
    expect(res.error?.message).toContain('No space left on device')
    expectReleases(c, [v1])
    await expectServing(c, v1, '1.0.0')
    rmSync(join(c.p.dir, 'app', 'assets'), { recursive: true })
    await nextRunProceeds(c, '3.0.0')
  })
})

describe('the rollback itself fails', () => {
  test("9. the previous release was deleted by hand: exit 5, each host's state in the log and in hostStates", async () => {
    const c = await setup('rollback-fails', {
      config: cfg => ({
        ...cfg,
        stages: { ...(cfg.stages as Config), restart: '[ ! -x bin/sabotage ] || bin/sabotage; bin/restart' }
      })
    })
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0', healthy: false })
    // someone "cleans up" the old release while the new one starts
    const sabotage = join(c.p.dir, 'app', 'bin', 'sabotage')
    writeFileSync(sabotage, '#!/bin/sh\nrm -rf "$SAFE_DEPLOY_PATH/releases/$SAFE_DEPLOY_PREVIOUS_RELEASE"\n')
    chmodSync(sabotage, 0o755)
    const r = await c.p.deploy(['--json'])
    expectExit(r, 5)
    const res = expectFailure(r, c, 'verify', /ROLLBACK FAILED: undo of switch: /)
    expect(res.verdict).toContain(`release ${v1} does not exist`)
    expect(res.status).toBe('failed')
    const note =
      `current -> releases/${res.release}, the release this run switched to; it fails its checks: ` +
      `health check GET http://127.0.0.1:${c.p.port}/health from ${c.hostName} failed after 1 attempt: ` +
      'expected HTTP 200, last answer HTTP 500 "unhealthy 2.0.0"'
    expect(res.hostStates).toEqual([
      { host: c.hostName, current: res.release, reachable: true, healthy: false, note }
    ])
    expect(lastLog(c.p.logDir)).toContain(`[finish] [${c.hostName}] state: ${note}`)
    expect(currentOf(c.root)).toBe(`releases/${res.release}`)
    expect(await answer(c.p.port)).toBe('version 2.0.0')
    expect(lockExists(c.root)).toBe(false)
    // the release that failed is marked bad, so that a later `rollback` never goes back to it
    expect(historyOf(c.root).at(-1)).toMatchObject({ release: res.release, status: 'failed', bad: true })
    rmSync(sabotage)
    await nextRunProceeds(c, '3.0.0')
  })
})
