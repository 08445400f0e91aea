/**
 * A user deploys the example app to a real sshd host: v1, then v2, then a broken v3 that is rolled back.
 * Everything crosses a real process boundary: sshd on 127.0.x.y, the app's HTTP port, the files on disk.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, lstatSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, type SshHost } from './harness/sshd.js'
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
let root: string
let p: Project

beforeAll(async () => {
  host = await startSshd()
  root = host.root('ledger')
  p = await project({ hosts: [host], root })
})

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
})

describe('deploy over SSH', () => {
  let v1: string
  let v2: string

  test('v1: uploads, links shared, builds, switches, restarts, verifies', async () => {
    p.app({ version: '1.0.0' })
    const r = await p.deploy()
    expect(r.stderr).toContain('DEPLOYMENT SUCCESS')
    expect(r.code).toBe(0)
    const releases = releasesOf(root)
    expect(releases).toHaveLength(1)
    v1 = releases[0] as string
    expect(v1).toMatch(/^\d{8}T\d{6}Z-local$/)
    expect(currentOf(root)).toBe(`releases/${v1}`)
    const rel = join(root, 'releases', v1)
    expect(lstatSync(join(rel, '.env')).isSymbolicLink()).toBe(true)
    expect(readlinkSync(join(rel, '.env'))).toBe(join(root, 'shared', '.env'))
    expect(readFileSync(join(rel, '.env'), 'utf8')).toBe('SECRET=from-shared\n')
    expect(lstatSync(join(rel, 'logs')).isSymbolicLink()).toBe(true)
    expect(readFileSync(join(rel, 'BUILD_OK'), 'utf8')).toBe('built\n')
    expect(await answer(p.port)).toBe('version 1.0.0')
    expect(lockExists(root)).toBe(false)
    const log = lastLog(p.logDir)
    expect(log).toMatch(/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[start\] /)
    expect(log).toMatch(
      /\[verify\] \[127\.0\.\d+\.\d+:2222\] GET http:\/\/127\.0\.0\.1:\d+\/health: HTTP 200/
    )
    expect(
      log
        .trim()
        .split('\n')
        .some(l => /DEPLOYMENT SUCCESS \(\d+\.\d s\)$/.test(l))
    ).toBe(true)
  })

  test('v2: current moves, history has one line per deploy', async () => {
    p.app({ version: '2.0.0' })
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(0)
    const result = JSON.parse(r.stdout) as Record<string, unknown>
    v2 = result.release as string
    expect(result).toMatchObject({ status: 'success', previousRelease: v1, rolledBack: false, exitCode: 0 })
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(await answer(p.port)).toBe('version 2.0.0')
    const history = historyOf(root)
    expect(history.map(h => [h.type, h.release, h.status])).toEqual([
      ['deploy', v1, 'success'],
      ['deploy', v2, 'success']
    ])
    expect(history[1]?.previous).toBe(v1)
    expect(existsSync(result.reportFile as string)).toBe(true)
    const report = JSON.parse(readFileSync(result.reportFile as string, 'utf8')) as Record<string, unknown>
    expect(report.release).toBe(v2)
  })

  test('v3 never becomes healthy: rolled back to v2, exit 4, marked bad', async () => {
    p.app({ version: '3.0.0', healthy: false })
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(4)
    const result = JSON.parse(r.stdout) as Record<string, unknown>
    expect(result.status).toBe('rolled-back')
    expect(result.rolledBack).toBe(true)
    expect(result.error).toMatchObject({ stage: 'verify', host: `${host.address}:2222` })
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(await answer(p.port)).toBe('version 2.0.0')
    const bad = result.release as string
    expect(releasesOf(root)).toContain(bad)
    const last = historyOf(root).at(-1)
    expect(last).toMatchObject({ type: 'deploy', release: bad, status: 'rolled-back', bad: true })
    const log = lastLog(p.logDir)
    expect(log).toContain('[verify]')
    expect(log).toMatch(
      /FAILED: health check GET http:\/\/127\.0\.0\.1:\d+\/health from 127\.0\.\d+\.\d+:2222 failed after 10 attempts: expected HTTP 200, last answer HTTP 500 "unhealthy 3\.0\.0"/
    )
    expect(log).toMatch(/\[rollback\] .*current -> releases\/\S+ \(restored\)/)
    expect(log).toMatch(/DEPLOYMENT FAILED at verify on \S+: .* ROLLED BACK \(\d+\.\d s\)/)
    expect(lockExists(root)).toBe(false)
  })

  test('a failing build leaves current untouched and removes the half-made release (exit 3)', async () => {
    const before = releasesOf(root)
    p.app({ version: '4.0.0' })
    const r = await p.run(['deploy', '--json'])
    expect(r.code).toBe(0)
    const good = (JSON.parse(r.stdout) as { release: string }).release
    // now break the build
    const broken = await project({
      hosts: [host],
      root,
      config: c => ({
        ...c,
        stages: { build: 'echo compiling; echo "error: missing module" >&2; exit 7', restart: 'bin/restart' }
      })
    })
    broken.app({ version: '5.0.0' })
    const b = await broken.deploy(['--json'])
    expect(b.code).toBe(3)
    const result = JSON.parse(b.stdout) as {
      error: { stage: string; host: string; message: string }
      release: string
    }
    expect(result.error.stage).toBe('deploy')
    expect(result.error.host).toBe(`${host.address}:2222`)
    expect(result.error.message).toContain('build failed on')
    expect(result.error.message).toContain('(exit 7)')
    expect(currentOf(root)).toBe(`releases/${good}`)
    expect(releasesOf(root)).toEqual([...before, good].sort())
    expect(existsSync(join(root, 'releases', result.release))).toBe(false)
    expect(await answer(p.port)).toBe('version 4.0.0')
    expect(lockExists(root)).toBe(false)
    expect(lastLog(broken.logDir)).toMatch(/error: missing module/)
    expect(lastLog(broken.logDir)).toMatch(
      /DEPLOYMENT FAILED at deploy on \S+: build failed .* Nothing live was changed/
    )
    process.chdir(p.dir)
  })

  test('releases lists them, current marked, the rolled-back one marked bad', async () => {
    const r = await p.run(['releases'])
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines[0]).toBe(`${host.address}:2222:`)
    // one state per release: the current one, the bad one, the verified ones
    expect(lines.filter(l => l.startsWith('  * '))).toEqual([
      expect.stringMatching(/^ {2}\* \S+ {2}current, deployed by /)
    ])
    const bad = historyOf(root).find(e => e.status === 'rolled-back')?.release as string
    expect(lines.find(l => l.includes(bad))).toMatch(new RegExp(`^ {4}${bad} {2}bad, deployed by `))
    expect(lines.filter(l => / {2}verified, deployed by /.test(l)).length).toBeGreaterThan(0)
  })

  test('manual rollback goes to the previous good release, skipping the bad one', async () => {
    const r = await p.run(['rollback', '--json'])
    expect(r.code).toBe(0)
    const result = JSON.parse(r.stdout) as { release: string; previousRelease: string }
    expect(result.release).toBe(v2)
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(await answer(p.port)).toBe('version 2.0.0')
    expect(historyOf(root).at(-1)).toMatchObject({
      type: 'rollback',
      release: v2,
      from: result.previousRelease,
      status: 'success'
    })
  })

  test('rollback --to a named release, and a bad name is refused before connecting', async () => {
    const r = await p.run(['rollback', '--to', v1])
    expect(r.code).toBe(0)
    expect(currentOf(root)).toBe(`releases/${v1}`)
    expect(await answer(p.port)).toBe('version 1.0.0')
    const bad = await p.run(['rollback', '--to', 'v1; rm -rf /'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('is not a release name')
    const missing = await p.run(['rollback', '--to', '20200101T000000Z-abcdef0'])
    expect(missing.code).toBe(3)
    expect(missing.stderr).toContain('release 20200101T000000Z-abcdef0 does not exist on')
    expect(currentOf(root)).toBe(`releases/${v1}`)
  })

  test('status shows the current release, health and the lock', async () => {
    const r = await p.run(['status'])
    expect(r.stdout).toContain(`current ${v1}`)
    expect(r.stdout).toContain('healthy')
    expect(r.stdout).toContain('lock: free')
    expect(r.code).toBe(0)
  })
})
