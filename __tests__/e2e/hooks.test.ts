/**
 * Hooks at named points (config `hooks`) on a real sshd host: each hook appends a marker line with its
 * environment, its working dir and where `current` points to a file in the shared dir, so the test sees which
 * hook ran, in which release, with what, and in what order relative to the switch.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fastShell, startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { expectExit, resultOf } from './harness/cliproc.js'
import {
  answer,
  currentOf,
  fleetProject,
  lastLog,
  project,
  releasesOf,
  stopApp,
  type Project
} from './support.js'

/** Appends `<name> key=value ...` to shared/hooks.log; exits 7 when shared/fail.<name> exists. */
const mark = (name: string) =>
  [
    `echo "${name} hook=$SAFE_DEPLOY_HOOK release=$SAFE_DEPLOY_RELEASE previous=$SAFE_DEPLOY_PREVIOUS_RELEASE`,
    `stage=$SAFE_DEPLOY_STAGE host=$SAFE_DEPLOY_HOST dir=$(basename "$PWD") current=$(readlink "$SAFE_DEPLOY_PATH/current")`,
    `to=$SAFE_DEPLOY_ROLLED_BACK_TO from=$SAFE_DEPLOY_ROLLED_BACK_FROM" >> "$SAFE_DEPLOY_SHARED/hooks.log";`,
    `test ! -e "$SAFE_DEPLOY_SHARED/fail.${name}" || { echo "${name} says no" >&2; exit 7; }`
  ].join(' ')

let host: SshHost
let root: string
let p: Project
const HOOKS = {
  before_switch: mark('before_switch'),
  after_verify: mark('after_verify'),
  after_rollback: mark('after_rollback')
}

/** The marker lines written on the host of `at` (its deploy root) since the last call, each as its fields. */
function marks(at = root): Record<string, string>[] {
  const hookLog = join(at, 'shared', 'hooks.log')
  if (!existsSync(hookLog)) return []
  const lines = readFileSync(hookLog, 'utf8').split('\n').filter(Boolean)
  rmSync(hookLog)
  return lines.map(l => {
    const [name, ...kv] = l.split(' ')
    return {
      name: name as string,
      ...Object.fromEntries(kv.map(f => [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)]))
    }
  })
}

const failing = (name: string, on: boolean, at = root) => {
  const f = join(at, 'shared', `fail.${name}`)
  if (on) writeFileSync(f, '')
  else rmSync(f, { force: true })
}

async function deploy(version: string, opts: { healthy?: boolean } = {}) {
  p.app({ version, ...opts })
  const r = await p.deploy(['--json'])
  return { r, result: JSON.parse(r.stdout) as Record<string, unknown> }
}

beforeAll(async () => {
  host = await startSshd()
  root = host.root('hooks')
  p = await project({
    hosts: [host],
    root,
    config: base => ({
      ...base,
      verify: {
        http: { ...((base.verify as Record<string, unknown>).http as object), retries: 6, interval: '250ms' }
      },
      hooks: HOOKS
    })
  })
})

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
})

describe('hooks', () => {
  let v1: string
  let v2: string
  let v4: string

  test('before_switch runs in the new release before its switch, after_verify after its checks', async () => {
    const first = await deploy('1.0.0')
    expectExit(first.r, 0)
    v1 = first.result.release as string
    expect(marks().map(m => [m.name, m.dir, m.current])).toEqual([
      ['before_switch', v1, ''],
      ['after_verify', v1, `releases/${v1}`]
    ])

    const { r, result } = await deploy('2.0.0')
    expectExit(r, 0)
    v2 = result.release as string
    const [before, after, ...rest] = marks()
    expect(rest).toEqual([])
    expect(before).toMatchObject({
      name: 'before_switch',
      hook: 'before_switch',
      release: v2,
      previous: v1,
      stage: 'switch',
      host: `${host.address}:2222`,
      dir: v2,
      // the host still serves the old release when the hook runs
      current: `releases/${v1}`
    })
    expect(after).toMatchObject({
      name: 'after_verify',
      hook: 'after_verify',
      release: v2,
      previous: v1,
      stage: 'verify',
      dir: v2,
      current: `releases/${v2}`
    })
    const log = lastLog(p.logDir).split('\n')
    const at = (re: RegExp) => log.findIndex(l => re.test(l))
    expect(at(/\[switch\] .*hooks\.before_switch in releases\//)).toBeGreaterThan(-1)
    expect(at(/\[switch\] .*hooks\.before_switch in releases\//)).toBeLessThan(at(/current -> releases\//))
    // after the checks passed
    expect(at(/\[verify\] .*hooks\.after_verify in releases\//)).toBeGreaterThan(at(/\[verify\] .*HTTP 200/))
  })

  test('a failing before_switch leaves the old release serving (exit 3) and removes the staged one', async () => {
    failing('before_switch', true)
    try {
      const { r, result } = await deploy('3.0.0')
      expectExit(r, 3)
      expect(result.error).toMatchObject({ stage: 'switch', host: `${host.address}:2222` })
      const staged = result.release as string
      expect(currentOf(root)).toBe(`releases/${v2}`)
      expect(await answer(p.port)).toBe('version 2.0.0')
      expect(releasesOf(root)).not.toContain(staged)
      // it ran where the run would have switched, and nothing was restored: no after_rollback
      expect(marks().map(m => [m.name, m.dir, m.current])).toEqual([
        ['before_switch', staged, `releases/${v2}`]
      ])
      expect(lastLog(p.logDir)).toMatch(
        /\[switch\] .*FAILED: hooks\.before_switch failed on \S+ \(exit 7\): before_switch says no/
      )
    } finally {
      failing('before_switch', false)
    }
  })

  test('a failing after_verify is a warning: the verified release stays (exit 0)', async () => {
    failing('after_verify', true)
    try {
      const { r, result } = await deploy('4.0.0')
      expectExit(r, 0)
      v4 = result.release as string
      expect(currentOf(root)).toBe(`releases/${v4}`)
      expect(await answer(p.port)).toBe('version 4.0.0')
      expect(marks().map(m => m.name)).toEqual(['before_switch', 'after_verify'])
      expect(lastLog(p.logDir)).toMatch(
        /\[verify\] \[\S+\] WARNING: hooks\.after_verify failed on \S+ \(exit 7\): after_verify says no/
      )
    } finally {
      failing('after_verify', false)
    }
  })

  test('after a failed verify (exit 4), after_rollback runs in the restored release; after_verify never', async () => {
    const { r, result } = await deploy('5.0.0', { healthy: false })
    expectExit(r, 4)
    const bad = result.release as string
    expect(currentOf(root)).toBe(`releases/${v4}`)
    expect(marks()).toEqual([
      expect.objectContaining({ name: 'before_switch', dir: bad, current: `releases/${v4}` }),
      expect.objectContaining({
        name: 'after_rollback',
        hook: 'after_rollback',
        release: v4,
        stage: 'rollback',
        dir: v4,
        current: `releases/${v4}`,
        to: v4,
        from: bad
      })
    ])
  })

  test('a manual rollback runs before_switch and after_rollback in its target', async () => {
    const r = await p.run(['rollback'])
    expectExit(r, 0)
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(await answer(p.port)).toBe('version 2.0.0')
    expect(marks()).toEqual([
      expect.objectContaining({ name: 'before_switch', dir: v2, current: `releases/${v4}` }),
      expect.objectContaining({
        name: 'after_rollback',
        hook: 'after_rollback',
        release: v2,
        stage: 'switch',
        dir: v2,
        current: `releases/${v2}`,
        to: v2,
        from: v4
      })
    ])
  })

  test('a failing after_rollback is a warning: the rollback stands', async () => {
    failing('after_rollback', true)
    try {
      const r = await p.run(['rollback', '--to', v4])
      expectExit(r, 0)
      expect(currentOf(root)).toBe(`releases/${v4}`)
      expect(marks().map(m => m.name)).toEqual(['before_switch', 'after_rollback'])
      expect(lastLog(p.logDir)).toMatch(/WARNING: hooks\.after_rollback failed on \S+ \(exit 7\)/)
    } finally {
      failing('after_rollback', false)
    }
  })
})

describe('hooks in a fleet rollout', () => {
  const pidFiles: string[] = []
  afterAll(async () => {
    for (const f of pidFiles) await stopApp(f)
  })

  test('before_switch failing on batch 2: batch 1 is put back (exit 4) and gets after_rollback', async () => {
    const hosts = [
      await startSshd({ extraConfig: fastShell() }),
      await startSshd({ extraConfig: fastShell() })
    ]
    const f = await fleetProject('hooks-fleet', hosts, {
      config: c => ({ ...c, hooks: HOOKS, rollout: { batch: 1 } })
    })
    pidFiles.push(...f.pidFiles)
    const [r1, r2] = f.roots as [string, string]
    f.p.app({ version: '1.0.0' })
    const first = await f.p.deploy(['--json'])
    expectExit(first, 0)
    const v1 = resultOf(first).release as string
    // per host, each hook in its batch: h1's before_switch, switch, verify, then h2's
    expect(marks(r1).map(m => [m.name, m.host])).toEqual([
      ['before_switch', 'h1'],
      ['after_verify', 'h1']
    ])
    expect(marks(r2).map(m => [m.name, m.host])).toEqual([
      ['before_switch', 'h2'],
      ['after_verify', 'h2']
    ])

    failing('before_switch', true, r2)
    f.p.app({ version: '2.0.0' })
    const r = await f.p.deploy(['--json'])
    expectExit(r, 4)
    const result = resultOf(r)
    const v2 = result.release as string
    expect(result.error).toMatchObject({ stage: 'switch', host: 'h2' })
    for (const [i, at] of f.roots.entries()) {
      expect(currentOf(at)).toBe(`releases/${v1}`)
      expect(await answer(f.ports[i] as number)).toBe('version 1.0.0')
    }
    // h1 switched and was put back: after_rollback ran there in v1; h2 never switched: its staged release is gone
    expect(marks(r1)).toEqual([
      expect.objectContaining({ name: 'before_switch', dir: v2, current: `releases/${v1}` }),
      expect.objectContaining({ name: 'after_verify', dir: v2, current: `releases/${v2}` }),
      expect.objectContaining({
        name: 'after_rollback',
        dir: v1,
        current: `releases/${v1}`,
        to: v1,
        from: v2
      })
    ])
    expect(marks(r2)).toEqual([
      expect.objectContaining({ name: 'before_switch', dir: v2, current: `releases/${v1}` })
    ])
    expect(releasesOf(r2)).not.toContain(v2)
    expect(lastLog(f.p.logDir)).toMatch(
      /\[switch\] \[h2\] FAILED: hooks\.before_switch failed on h2 \(exit 7\)/
    )
  })
})
