/**
 * The state a run leaves behind, end to end against a real sshd: the lock is a lease held for the whole run,
 * rollback targets come from what history recorded as verified (not from release names or the runner's
 * clock), half-made releases are removed and never chosen, shared links never reach outside the release, and
 * a log that cannot be written never stops a run from undoing itself.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fastShell, startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { pausePoint, type PausePoint } from './harness/pause.js'
import { expectExit, resultOf, spawnCli } from './harness/cliproc.js'
import {
  answer,
  currentOf,
  lockExists,
  project,
  releasesOf,
  stopApp,
  type CliRun,
  type Project
} from './support.js'
import { loadConfig } from '../../src/config/load.js'
import { deploy } from '../../src/flows/deploy.js'
import type { Reporter } from '../../src/report/log.js'

let host: SshHost
const pidFiles: string[] = []
const cleanups: (() => void)[] = []

beforeAll(async () => {
  host = await startSshd({ extraConfig: fastShell() })
})

afterAll(async () => {
  for (const c of cleanups.reverse()) c()
  for (const f of pidFiles) await stopApp(f)
  await stopAll()
})

type Config = Record<string, unknown>
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

interface Case {
  p: Project
  root: string
}

/** A project on `host` with quick health checks; `config` adjusts the config. */
async function setup(name: string, config?: (c: Config) => Config): Promise<Case> {
  const root = host.root(name)
  const p = await project({
    hosts: [host],
    root,
    config: base => {
      const c: Config = {
        ...base,
        verify: { http: { ...((base.verify as Config).http as Config), retries: 6, interval: '250ms' } }
      }
      return config ? config(c) : c
    }
  })
  pidFiles.push(join(root, 'shared', 'app.pid'))
  return { p, root }
}

async function deployOk(c: Case, version: string): Promise<string> {
  c.p.app({ version })
  const r = await c.p.deploy(['--json'])
  expectExit(r, 0)
  const release = resultOf(r).release as string
  expect(currentOf(c.root)).toBe(`releases/${release}`)
  expect(await answer(c.p.port)).toBe(`version ${version}`)
  return release
}

async function expectServing(c: Case, release: string, version: string): Promise<void> {
  expect(currentOf(c.root)).toBe(`releases/${release}`)
  expect(await answer(c.p.port)).toBe(`version ${version}`)
  expect(await answer(c.p.port, '/health')).toBe(`ok ${version}`)
}

/** The lock someone else holds now (a second run, a person), with a fresh expiry. */
function foreignLock(root: string): void {
  const dir = join(root, '.safe-deploy', 'lock')
  spawnSync('rm', ['-rf', dir])
  mkdirSync(dir, { recursive: true })
  const owner = {
    who: 'bob',
    pid: 1,
    runner: 'elsewhere',
    command: 'deploy',
    token: 'not-yours',
    started: '2026-11-21T10:00:00Z',
    expires: 'later',
    expires_epoch: Math.floor(Date.now() / 1000) + 3600
  }
  writeFileSync(join(dir, 'owner.json'), JSON.stringify(owner) + '\n')
}

function lockToken(root: string): string | undefined {
  const f = join(root, '.safe-deploy', 'lock', 'owner.json')
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as { token: string }).token : undefined
}

/** history.jsonl as lines (raw: a torn line is kept as it is). */
function historyLines(root: string): string[] {
  return readFileSync(join(root, '.safe-deploy', 'history.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
}

function buildPause(name: string): PausePoint {
  return pausePoint(tempDir(`marks-${name}-`), 'build', 40)
}

describe('the lock is a lease (lock.ttl: 6s, a 15 s build)', () => {
  test('a second deploy during the build finds the lock held, not expired; the first goes on to success', async () => {
    const pause = buildPause('lease-held')
    const c = await setup('lease-held', cfg => ({
      ...cfg,
      lock: { ttl: '6s' },
      stages: { ...(cfg.stages as Config), build: `echo built > BUILD_OK; ${pause.shell}` }
    }))
    await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    pause.arm()
    const first = c.p.deploy(['--json'])
    await pause.reached()
    // longer than the ttl: only renewals during the build keep the lock ours
    await sleep(8000)
    const token = lockToken(c.root)
    const second = await c.p.deploy(['--json'])
    expectExit(second, 3)
    expect(second.stderr).toContain('another deploy holds the lock on')
    expect(second.stderr).not.toContain('took over an expired lock')
    expect(lockToken(c.root)).toBe(token)
    await sleep(7000)
    pause.release()
    const r: CliRun = await first
    expectExit(r, 0)
    const release = resultOf(r).release as string
    await expectServing(c, release, '2.0.0')
    expect(lockExists(c.root)).toBe(false)
  }, 90_000)

  test('the lock removed and taken by hand during the build: the run stops, undoes, exits non-zero; the older release stays live', async () => {
    const pause = buildPause('lease-lost')
    const c = await setup('lease-lost', cfg => ({
      ...cfg,
      lock: { ttl: '6s' },
      stages: { ...(cfg.stages as Config), build: `echo built > BUILD_OK; ${pause.shell}` }
    }))
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    pause.arm()
    const first = c.p.deploy(['--json'])
    await pause.reached()
    await sleep(3000)
    // a person ran `lock release`, and another run took the lock
    foreignLock(c.root)
    const r = await first
    pause.release()
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('the deploy lock was lost on')
    expect(resultOf(r).error?.message).toMatch(
      /^the deploy lock was lost on .*removed or taken by another run/
    )
    await expectServing(c, v1, '1.0.0')
    expect(releasesOf(c.root)).toEqual([v1])
    // the lock is the other run's now: not released by us
    expect(lockToken(c.root)).toBe('not-yours')
  }, 90_000)
})

describe('rollback targets come from history', () => {
  test('a deploy killed during its build: the next deploy removes the half-made release, and rollback never goes to it', async () => {
    const pause = buildPause('killed-build')
    const c = await setup('killed-build', cfg => ({
      ...cfg,
      stages: { ...(cfg.stages as Config), build: `echo built > BUILD_OK; ${pause.shell}` }
    }))
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    pause.arm()
    const proc = spawnCli(['deploy', '--json', '--config', c.p.configFile], c.p.env, c.p.dir)
    await pause.reached()
    proc.child.kill('SIGKILL')
    await proc.exited
    pause.release()
    const half = releasesOf(c.root).find(r => r !== v1)
    expect(half).toBeDefined()
    expect(currentOf(c.root)).toBe(`releases/${v1}`)
    // what a person does after a killed run
    expect((await c.p.run(['lock', 'release'])).code).toBe(0)
    // naming it is refused: it was never finished
    const to = await c.p.run(['rollback', '--to', half as string])
    expectExit(to, 2)
    expect(to.stderr).toContain('was never finished')
    await expectServing(c, v1, '1.0.0')
    // nor does a plain rollback go to it: history never recorded it healthy
    const plain = await c.p.run(['rollback'])
    expectExit(plain, 3)
    expect(plain.stderr).toContain('no earlier release that history records as verified healthy')
    await expectServing(c, v1, '1.0.0')

    c.p.app({ version: '3.0.0' })
    const next = await c.p.deploy(['--json'])
    expectExit(next, 0)
    expect(next.stderr).toMatch(/removed 1 unfinished release\(s\) left by an interrupted deploy.*: \S+/)
    expect(next.stderr).toContain(half)
    const v3 = resultOf(next).release as string
    expect(releasesOf(c.root)).toEqual([v1, v3].sort())

    const back = await c.p.run(['rollback', '--json'])
    expectExit(back, 0)
    expect(resultOf(back).release).toBe(v1)
    await expectServing(c, v1, '1.0.0')
  }, 120_000)

  test('a torn last line in history.jsonl does not swallow the bad mark of the next failed deploy', async () => {
    const c = await setup('torn-history')
    await deployOk(c, '1.0.0')
    const v2 = await deployOk(c, '2.0.0')
    // a history write cut short (a full disk, a killed shell): no newline at its end
    appendFileSync(join(c.root, '.safe-deploy', 'history.jsonl'), '{"type":"deploy","release":"2026')
    c.p.app({ version: '3.0.0', healthy: false })
    const broken = await c.p.deploy(['--json'])
    expectExit(broken, 4)
    const v3 = resultOf(broken).release as string
    const lines = historyLines(c.root)
    expect(lines.at(-2)).toBe('{"type":"deploy","release":"2026')
    expect(JSON.parse(lines.at(-1) as string)).toMatchObject({ release: v3, bad: true })
    const v4 = await deployOk(c, '4.0.0')
    expect([v2, v3, v4]).toEqual([v2, v3, v4].sort())

    const back = await c.p.run(['rollback', '--json'])
    expectExit(back, 0)
    expect(resultOf(back).release).toBe(v2)
    await expectServing(c, v2, '2.0.0')
  }, 120_000)

  test('a runner clock an hour behind: rollback still finds the release that really served before', async () => {
    const c = await setup('clock-behind')
    await deployOk(c, '1.0.0')
    const v2 = await deployOk(c, '2.0.0')
    c.p.app({ version: '3.0.0' })
    const calls: string[] = []
    const reporter: Reporter = {
      info: l => calls.push(l),
      warn: l => calls.push(l),
      error: l => calls.push(l),
      startGroup: () => undefined,
      endGroup: () => undefined
    }
    const loaded = loadConfig(c.p.configFile, {}, c.p.env)
    const behind = await deploy({ loaded, reporter, now: new Date(Date.now() - 3600_000) })
    if (behind.exitCode !== 0)
      throw new Error(`deploy exited ${behind.exitCode}:\n${calls.slice(-20).join('\n')}`)
    const v3 = behind.release as string
    // its name sorts before both earlier releases
    expect(releasesOf(c.root)[0]).toBe(v3)
    await expectServing(c, v3, '3.0.0')

    const back = await c.p.run(['rollback', '--json'])
    expectExit(back, 0)
    expect(resultOf(back).release).toBe(v2)
    await expectServing(c, v2, '2.0.0')
    const entries = historyLines(c.root).map(l => JSON.parse(l) as Record<string, unknown>)
    expect(entries.map(e => [e.type, e.release, e.status, e.verified])).toEqual([
      ['deploy', entries[0]?.release, 'success', true],
      ['deploy', v2, 'success', true],
      ['deploy', v3, 'success', true],
      ['rollback', v2, 'success', true]
    ])
  }, 120_000)
})

describe('shared links stay inside the release', () => {
  test('a source tree with config -> an outside dir and shared.files [config/.env]: refused before anything live changes', async () => {
    const c = await setup('shared-escape', cfg => ({
      ...cfg,
      shared: { ...(cfg.shared as Config), files: ['.env', 'config/.env'] }
    }))
    mkdirSync(join(c.root, 'shared', 'config'), { recursive: true })
    writeFileSync(join(c.root, 'shared', 'config', '.env'), 'SHARED=1\n')
    const v1 = await deployOk(c, '1.0.0')
    const outside = tempDir('outside-')
    writeFileSync(join(outside, '.env'), 'OUTSIDE=keep these bytes\n')
    c.p.app({ version: '2.0.0' })
    spawnSync('ln', ['-s', outside, join(c.p.dir, 'app', 'config')])
    const r = await c.p.deploy(['--json'])
    expectExit(r, 3)
    expect(resultOf(r).error?.stage).toBe('deploy')
    expect(r.stderr).toContain('refusing to link shared config/.env: config in the release is a symlink')
    expect(readFileSync(join(outside, '.env'), 'utf8')).toBe('OUTSIDE=keep these bytes\n')
    await expectServing(c, v1, '1.0.0')
    expect(releasesOf(c.root)).toEqual([v1])
    expect(lockExists(c.root)).toBe(false)
  }, 90_000)
})

describe('a log that cannot be written', () => {
  test('the runner disk fills during the run: a broken release is still rolled back (exit 4), and the run says so', async () => {
    const logDir = tempDir('full-logs-')
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', logDir])
    expect(mount.status).toBe(0)
    cleanups.push(() => void spawnSync('umount', ['-l', logDir]))
    // the build fills the runner's log disk (the host is this machine) and prints enough to overflow it
    const c = await setup('log-disk-full', cfg => ({
      ...cfg,
      log_dir: logDir,
      stages: {
        ...(cfg.stages as Config),
        build: `echo built > BUILD_OK; if [ -e FILL ]; then cat /dev/zero > '${logDir}/fill' 2>/dev/null; seq 1 400 | sed 's/^/build output line /'; fi`
      }
    }))
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0', healthy: false })
    writeFileSync(join(c.p.dir, 'app', 'FILL'), '')
    const r = await c.p.deploy(['--json'])
    expectExit(r, 4)
    const res = resultOf(r)
    expect(res.error?.stage).toBe('verify')
    expect(res.verdict).toContain('ROLLED BACK')
    expect(
      r.stderr.match(
        /cannot write the log file .*No space left on device|cannot write the log file .*ENOSPC/g
      )
    ).toHaveLength(1)
    expect(res.logFile).toBeUndefined()
    await expectServing(c, v1, '1.0.0')
    expect(lockExists(c.root)).toBe(false)
    // the whole log still reached the host
    const hostLog = readFileSync(join(c.root, '.safe-deploy', 'deploy.log'), 'utf8')
    expect(hostLog).toContain('build output line 400')
    expect(hostLog).toContain('DEPLOYMENT FAILED at verify')
  }, 90_000)
})
