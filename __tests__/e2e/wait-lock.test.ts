/**
 * `--wait-lock`: a deploy that finds the lock held waits for it instead of failing, and gives up when the
 * wait is over (exit 3, nothing changed). The holder is a real run's lock file on the host (another deploy,
 * a nightly backup); it is released by removing it, as its run does when it ends.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fastShell, startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { currentOf, lastLog, lockExists, project, releasesOf, stopApp } from './support.js'

let host: SshHost
const pidFiles: string[] = []

beforeAll(async () => {
  host = await startSshd({ extraConfig: fastShell() })
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  await stopAll()
})

/** The lock as a nightly backup run holds it, for an hour. */
function holdLock(root: string) {
  mkdirSync(join(root, '.safe-deploy', 'lock'), { recursive: true })
  writeFileSync(
    join(root, '.safe-deploy', 'lock', 'owner.json'),
    JSON.stringify({
      who: 'nightly',
      pid: 4242,
      runner: 'ci',
      command: 'backup',
      token: 'cafebabe',
      started: '2026-12-01T02:00:00Z',
      expires: 'later',
      expires_epoch: Math.floor(Date.now() / 1000) + 3600
    }) + '\n'
  )
}

describe('--wait-lock', () => {
  test('waits while another run holds the lock, then deploys when it is released', async () => {
    const root = host.root('waits')
    const p = await project({ hosts: [host], root })
    pidFiles.push(join(root, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    holdLock(root)
    // the other run ends 3 s from now
    const release = setTimeout(() => rmSync(join(root, '.safe-deploy', 'lock'), { recursive: true }), 3000)
    try {
      const r = await p.deploy(['--wait-lock', '60s', '--json'])
      expect(r.code).toBe(0)
      const log = lastLog(p.logDir)
      expect(log).toMatch(
        /\[preflight\] \S+ waiting up to 60 s for the lock held by nightly running `backup` from ci/
      )
      expect(log).toMatch(/\[preflight\] \S+ the lock is free after \d+ s/)
      const rel = (JSON.parse(r.stdout) as { release: string }).release
      expect(currentOf(root)).toBe(`releases/${rel}`)
      expect(lockExists(root)).toBe(false)
    } finally {
      clearTimeout(release)
    }
  })

  test('gives up when the wait is over: exit 3, nothing changed, their lock untouched', async () => {
    const root = host.root('gives-up')
    const p = await project({ hosts: [host], root })
    p.app({ version: '1.0.0' })
    holdLock(root)
    const r = await p.deploy(['--wait-lock', '3s'])
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(
      /another deploy holds the lock on \S+: nightly running `backup` from ci .*\(waited \d+ s with --wait-lock\)/
    )
    expect(releasesOf(root)).toEqual([])
    expect(lockExists(root)).toBe(true)
  })

  test('a bad duration is refused before anything connects', async () => {
    const root = host.root('bad-wait')
    const p = await project({ hosts: [host], root })
    const r = await p.deploy(['--wait-lock', 'soon'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('--wait-lock: expected a duration such as 90s or 5m, got "soon"')
  })
})
