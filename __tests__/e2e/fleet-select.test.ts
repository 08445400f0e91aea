/**
 * Fleets, end to end against three real sshd instances on loopback (web-1, the primary; web-2; worker-1), each
 * with its own deploy root: --hosts / --roles keep each host's settings, the lock is global (always on the
 * config's primary), an unreachable host stops the run before anything changes unless --skip-unreachable,
 * and status / releases / plan / lock across the fleet with one host down.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { authorizeKeyOf, fastShell, startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { pausePoint } from './harness/pause.js'
import {
  cli,
  currentOf,
  historyOf,
  lastLog,
  lockExists,
  project,
  q,
  releasesOf,
  type Project
} from './support.js'

let web1: SshHost
let web2: SshHost
let worker: SshHost

beforeAll(async () => {
  web1 = await startSshd({ extraConfig: fastShell() })
  web2 = await startSshd({ extraConfig: fastShell() })
  worker = await startSshd({ extraConfig: fastShell() })
  // one client key for every host, as in production
  for (const h of [web2, worker]) authorizeKeyOf(h, web1)
})

afterAll(stopAll)

interface Fleet {
  p: Project
  /** Deploy root per host name. */
  roots: Record<'web-1' | 'web-2' | 'worker-1', string>
}

/**
 * A project deploying to the three hosts, each under its own path (`hosts[].path`), with roles; no app
 * process: the build writes a file, restart records the release it ran in, verify checks the build's file.
 */
async function fleet(name: string, extra: Record<string, unknown> = {}, build = ''): Promise<Fleet> {
  const roots = {
    'web-1': web1.root(`${name}-web-1`),
    'web-2': web2.root(`${name}-web-2`),
    'worker-1': worker.root(`${name}-worker-1`)
  }
  const p = await project({
    hosts: [web1, web2, worker],
    root: roots['web-1'],
    config: c => ({
      ...c,
      hosts: [
        {
          name: 'web-1',
          address: web1.address,
          port: web1.port,
          user: 'root',
          roles: ['web'],
          primary: true
        },
        {
          name: 'web-2',
          address: web2.address,
          port: web2.port,
          user: 'root',
          roles: ['web'],
          path: roots['web-2']
        },
        {
          name: 'worker-1',
          address: worker.address,
          port: worker.port,
          user: 'root',
          roles: ['worker'],
          path: roots['worker-1']
        }
      ],
      ssh: { ...(c.ssh as Record<string, unknown>), connect_timeout: '3s', connect_retries: 0 },
      shared: { files: [], dirs: ['data'] },
      stages: { build: `echo built > BUILD_OK${build ? `; ${build}` : ''}`, restart: 'pwd > RESTARTED_IN' },
      verify: { command: 'test -f BUILD_OK' },
      ...extra
    })
  })
  p.app({ version: '1.0.0' })
  return { p, roots }
}

const deployed = (root: string) => existsSync(join(root, 'current', 'RESTARTED_IN'))

describe('--hosts and --roles select hosts of the config', () => {
  test('each selected host keeps its own path and name; the others are not touched', async () => {
    const { p, roots } = await fleet('select')
    const r = await p.deploy(['--roles', 'worker'])
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('[worker-1] connected')
    expect(deployed(roots['worker-1'])).toBe(true)
    // it ran in worker-1's own path, not the top-level one
    expect(readFileSync(join(roots['worker-1'], 'current', 'RESTARTED_IN'), 'utf8')).toContain(
      `${roots['worker-1']}/releases/`
    )
    expect(releasesOf(roots['web-1'])).toEqual([])
    expect(releasesOf(roots['web-2'])).toEqual([])
    expect(historyOf(roots['worker-1'])).toMatchObject([{ status: 'success', hosts: ['worker-1'] }])

    // both: the intersection
    const r2 = await p.deploy(['--hosts', 'web-2,worker-1', '--roles', 'web'])
    expect(r2.code).toBe(0)
    expect(deployed(roots['web-2'])).toBe(true)
    expect(releasesOf(roots['worker-1'])).toHaveLength(1)
    expect(releasesOf(roots['web-1'])).toEqual([])
  })

  test('a selection without the primary: the migration runs once, on the first selected host, in its new release', async () => {
    const marks = tempDir('migrated-')
    const { p, roots } = await fleet('migrate', {
      stages: {
        build: 'echo built > BUILD_OK',
        restart: 'pwd > RESTARTED_IN',
        migrate: `pwd >> ${q(join(marks, 'migrated'))}`
      }
    })
    const r = await p.deploy(['--hosts', 'web-2,worker-1'])
    expect(r.code).toBe(0)
    // two hosts: the per-host table on the terminal, after the stages
    expect(r.stderr).toMatch(/^ {2}host +roles +release before → after +stage +time +result +error$/m)
    expect(r.stderr).toMatch(/^ {2}worker-1 +worker +\(none\) → \d{8}T\d{6}Z-\S+ +\S+ +\d+\.\d s +ok$/m)
    const ran = readFileSync(join(marks, 'migrated'), 'utf8').trim().split('\n')
    expect(ran).toEqual([`${roots['web-2']}/releases/${currentOf(roots['web-2'])?.replace('releases/', '')}`])
    expect(releasesOf(roots['web-1'])).toEqual([])
    expect(historyOf(roots['web-2'])).toMatchObject([{ status: 'success', hosts: ['web-2', 'worker-1'] }])
  })

  test('an unknown role or host is exit 2 before anything connects, listing the known ones', async () => {
    const { p, roots } = await fleet('unknown')
    const r = await p.deploy(['--roles', 'db'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(
      '--roles: "db" is not a role of any host of this config; the roles are web, worker'
    )
    const r2 = await p.deploy(['--hosts', 'web-9'])
    expect(r2.code).toBe(2)
    expect(r2.stderr).toContain(
      `--hosts: "web-9" is not a host of this config; it has web-1 (${web1.address})`
    )
    for (const root of Object.values(roots)) expect(existsSync(join(root, '.safe-deploy'))).toBe(false)
  })

  test('a selection without the primary still locks on the primary: a second deploy of another host fails on the lock', async () => {
    const build = pausePoint(tempDir('marks-'), 'build')
    const { p, roots } = await fleet('lock', {}, build.shell)
    build.arm()
    const first = p.deploy(['--roles', 'worker'])
    await build.reached()
    // the worker's deploy holds the lock on web-1, where it deploys nothing
    expect(lockExists(roots['web-1'])).toBe(true)
    expect(lockExists(roots['worker-1'])).toBe(false)
    const second = await p.deploy(['--hosts', 'web-2'])
    build.release()
    expect(second.code).toBe(3)
    expect(second.stderr).toContain('another deploy holds the lock on web-1')
    expect(releasesOf(roots['web-2'])).toEqual([])
    const r = await first
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('[web-1] connected')
    expect(r.stderr).toContain('for the deploy lock only')
    expect(deployed(roots['worker-1'])).toBe(true)
    // nothing was deployed or recorded on the primary, and its lock is free again
    expect(releasesOf(roots['web-1'])).toEqual([])
    expect(historyOf(roots['web-1'])).toEqual([])
    expect(lockExists(roots['web-1'])).toBe(false)
    // now free: the second goes through
    expect((await p.deploy(['--hosts', 'web-2'])).code).toBe(0)
    expect(deployed(roots['web-2'])).toBe(true)
  })
})

describe('--skip-unreachable skips only hosts out of reach', () => {
  test("a host whose key does not match known_hosts stops the run, skip or not: that is not 'unreachable'", async () => {
    const { p, roots } = await fleet('hostkey')
    // known_hosts without worker-1's key, and a key of another host in its place
    const knownHosts = [web1, web2]
      .map(h => h.knownHostsLine)
      .concat(
        web1.knownHostsLine.replace(`[${web1.address}]:${web1.port}`, `[${worker.address}]:${worker.port}`)
      )
      .join('\n')
    const r = await cli(['deploy', '--skip-unreachable', '--config', p.configFile], {
      ...p.env,
      KNOWN_HOSTS: knownHosts
    })
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/DEPLOYMENT FAILED at preflight on worker-1: .*host key/i)
    expect(r.stderr).not.toContain('SKIPPED')
    for (const root of Object.values(roots)) expect(releasesOf(root)).toEqual([])
  })
})

describe('an unreachable host (these tests stop sshd: they run last)', () => {
  test('stops the run before anything changes; --skip-unreachable deploys to the rest, loudly; status, releases, plan show it', async () => {
    const { p, roots } = await fleet('down', { rollout: { batch: 1 } })
    expect((await p.deploy()).code).toBe(0)
    const before = Object.fromEntries(Object.entries(roots).map(([n, r]) => [n, currentOf(r)]))
    await worker.stop()
    p.app({ version: '2.0.0' })

    const r = await p.deploy()
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/DEPLOYMENT FAILED at preflight on worker-1: .*ECONNREFUSED/)
    // nothing changed anywhere: no new release dir, the lock free
    for (const [name, root] of Object.entries(roots)) {
      expect(currentOf(root)).toBe(before[name])
      expect(releasesOf(root)).toHaveLength(1)
    }
    expect(lockExists(roots['web-1'])).toBe(false)

    const dotenv = join(p.dir, 'out.env')
    const s = await p.deploy(['--skip-unreachable', '--json', '--dotenv', dotenv])
    expect(s.code).toBe(0)
    expect(s.stderr).toMatch(
      /\[worker-1\] WARNING: SKIPPED \(--skip-unreachable\): worker-1 cannot be reached/
    )
    expect(s.stderr).toMatch(
      /DEPLOYMENT SUCCESS .*; WARNING: SKIPPED worker-1 \(unreachable, --skip-unreachable\)/
    )
    const result = JSON.parse(s.stdout) as { hostResults: Record<string, unknown>[] }
    expect(result.hostResults).toMatchObject([
      { name: 'web-1', roles: ['web'], result: 'ok', before: before['web-1']?.replace('releases/', '') },
      { name: 'web-2', roles: ['web'], result: 'ok' },
      { name: 'worker-1', roles: ['worker'], result: 'skipped', error: expect.stringMatching(/ECONNREFUSED/) }
    ])
    expect(readFileSync(dotenv, 'utf8')).toContain('SAFE_DEPLOY_FAILED_HOSTS=worker-1\n')
    for (const name of ['web-1', 'web-2'] as const) {
      expect(currentOf(roots[name])).not.toBe(before[name])
      expect(readFileSync(join(roots[name], 'current', 'VERSION'), 'utf8').trim()).toBe('2.0.0')
    }
    expect(currentOf(roots['worker-1'])).toBe(before['worker-1'])
    // the per-host table, in the log
    const log = lastLog(p.logDir)
    expect(log).toMatch(/host +roles +release before → after +stage +time +result +error/)
    expect(log).toMatch(
      /worker-1 +worker +\(none\) → \(none\) +preflight +0\.0 s +skipped +unreachable: .*ECONNREFUSED/
    )

    // status: every host, the unreachable one as such; exit 3
    const st = await p.run(['status'])
    expect(st.code).toBe(3)
    expect(st.stdout).toMatch(/^web-1: current /m)
    expect(st.stdout).toMatch(/^web-2: current /m)
    expect(st.stdout).toMatch(/^worker-1: UNREACHABLE .*ECONNREFUSED/m)
    expect(st.stdout).toContain('lock: free (on the primary web-1: one lock for the whole fleet)')

    const rel = await p.run(['releases'])
    expect(rel.code).toBe(3)
    expect(rel.stdout).toMatch(/^worker-1:\n {2}UNREACHABLE: .*ECONNREFUSED/m)
    expect(rel.stdout).toMatch(/^web-2:\n {2}\* \d{8}T/m)

    // plan: every host with its roles and path, and the batches
    const plan = await p.run(['plan', '--roles', 'web'])
    expect(plan.code).toBe(0)
    expect(plan.stdout).toContain(
      `##   web-2 (root@${web2.address}:${web2.port}) roles web, path ${roots['web-2']}`
    )
    expect(plan.stdout).toContain('## rollout: switch and verify in 2 batches: 1) web-1; 2) web-2')
    expect(plan.stdout).toContain('## preflight on web-2')

    const lock = await p.run(['lock', 'status', '--hosts', 'web-2'])
    expect(lock.code).toBe(0)
    expect(lock.stdout).toContain('lock on web-1: free (on the primary web-1: one lock for the whole fleet)')

    // the primary is never skipped
    await web1.stop()
    const np = await p.deploy(['--skip-unreachable', '--hosts', 'web-2'])
    expect(np.code).toBe(3)
    expect(np.stderr).toMatch(
      /FAILED at preflight on web-1: .*the primary, which holds the deploy lock.*never skips the primary/
    )
    expect(releasesOf(roots['web-2'])).toHaveLength(2)
    const ls = await p.run(['lock', 'status'])
    expect(ls.code).toBe(3)
    expect(ls.stderr).toContain('the primary web-1, which holds the deploy lock, cannot be reached')
  })
})
