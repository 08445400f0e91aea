/**
 * Fleets end to end: several real sshd hosts on loopback, each with its own deploy root and its own app port
 * (the port is a file in the host's shared dir, read by the restart and the check), one config with roles and
 * a rollout. What is asserted is what each host ends on: `current`, what its app answers, its release dirs,
 * its history, and the run's per-host report (hostResults).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse, stringify } from 'yaml'
import { fastShell, startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { pausePoint } from './harness/pause.js'
import { expectExit, resultOf, spawnActionSource, spawnCli } from './harness/cliproc.js'
import {
  actionStep,
  answer,
  CHECK,
  currentOf,
  fleetProject,
  RESTART,
  type Fleet,
  historyOf,
  lastLog,
  lockExists,
  releasesOf,
  stopApp
} from './support.js'

type Config = Record<string, unknown>

const pool: SshHost[] = []
const pidFiles: string[] = []

beforeAll(async () => {
  for (let i = 0; i < 6; i++) pool.push(await startSshd({ extraConfig: fastShell() }))
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  await stopAll()
})

/** A fleet project (support.ts) whose apps afterAll stops. */
async function fleet(...args: Parameters<typeof fleetProject>): Promise<Fleet> {
  const f = await fleetProject(...args)
  pidFiles.push(...f.pidFiles)
  return f
}

/** Every host of `f` has `current` on `release` and its app answers `version`. */
async function expectServing(f: Fleet, release: string, version: string) {
  for (const [i, root] of f.roots.entries()) {
    expect(currentOf(root)).toBe(`releases/${release}`)
    expect(await answer(f.ports[i] as number)).toBe(`version ${version}`)
  }
}

/** Gives the config of `f` this rollout from the next run on (a first deploy without the long waits). */
function setRollout(f: Fleet, rollout: Config): void {
  const config = parse(readFileSync(f.p.configFile, 'utf8')) as Config
  writeFileSync(f.p.configFile, stringify({ ...config, rollout }))
}

async function deployOk(f: Fleet, version: string): Promise<string> {
  process.chdir(f.p.dir)
  f.p.app({ version })
  const r = await f.p.deploy(['--json'])
  expectExit(r, 0)
  return resultOf(r).release as string
}

const hostResult = (r: ReturnType<typeof resultOf>, name: string) => r.hostResults?.find(h => h.name === name)

describe('fleets', () => {
  test('three hosts with roles: backup and migrate once on the primary; the worker its own restart and check', async () => {
    const f = await fleet('roles', pool.slice(0, 3), {
      roles: [['web'], ['web'], ['worker']],
      config: c => ({
        ...c,
        roles: {
          worker: {
            stages: {
              restart: `echo "$SAFE_DEPLOY_RELEASE" >> "$SAFE_DEPLOY_SHARED/worker-restarts"; ${RESTART}`
            },
            verify: {
              command: `grep -qx "$SAFE_DEPLOY_RELEASE" "$SAFE_DEPLOY_SHARED/worker-restarts" && ${CHECK}`
            }
          }
        },
        stages: {
          ...(c.stages as Config),
          migrate: 'echo "$SAFE_DEPLOY_HOST" >> "$SAFE_DEPLOY_SHARED/migrations"'
        },
        backup: { files: ['shared/.env'] }
      })
    })
    process.chdir(f.p.dir)
    f.p.app({ version: '1.0.0' })
    const r = await f.p.deploy(['--json'])
    expectExit(r, 0)
    const res = resultOf(r)
    const release = res.release as string
    await expectServing(f, release, '1.0.0')
    // the migration ran once, on h1; the backup is on h1 only
    expect(readFileSync(join(f.roots[0] as string, 'shared', 'migrations'), 'utf8')).toBe('h1\n')
    expect(existsSync(join(f.roots[1] as string, 'shared', 'migrations'))).toBe(false)
    expect(existsSync(join(f.roots[2] as string, 'shared', 'migrations'))).toBe(false)
    expect(existsSync(join(f.roots[0] as string, 'backups'))).toBe(true)
    expect(existsSync(join(f.roots[1] as string, 'backups'))).toBe(false)
    // history, on every host, says where the backup and the migration ran
    for (const root of f.roots) {
      const last = historyOf(root).at(-1) as Record<string, unknown>
      expect(last).toMatchObject({ release, status: 'success', primary: 'h1', hosts: ['h1', 'h2', 'h3'] })
      expect(last.backup).toBe(res.backupName)
    }
    // the worker's own restart ran there and only there; its own check ran there
    expect(readFileSync(join(f.roots[2] as string, 'shared', 'worker-restarts'), 'utf8')).toBe(`${release}\n`)
    expect(existsSync(join(f.roots[0] as string, 'shared', 'worker-restarts'))).toBe(false)
    const log = lastLog(f.p.logDir)
    expect(log).toMatch(/\[verify\] \[h3\] \$ grep -qx/)
    expect(log).not.toMatch(/\[verify\] \[h1\] \$ grep -qx/)
    expect(res.hostResults?.map(h => [h.name, h.roles, h.result, h.after])).toEqual([
      ['h1', ['web'], 'ok', release],
      ['h2', ['web'], 'ok', release],
      ['h3', ['worker'], 'ok', release]
    ])
  })

  test('six hosts, batch 2, host 4 broken: 1-4 back on the old release, 5-6 never switched; exit 4', async () => {
    const f = await fleet('batch2', pool.slice(0, 6), {
      config: c => ({ ...c, rollout: { batch: 2 } })
    })
    const v1 = await deployOk(f, '1.0.0')
    writeFileSync(join(f.roots[3] as string, 'shared', 'broken'), '2.0.0')
    f.p.app({ version: '2.0.0' })
    const r = await f.p.deploy(['--json'])
    expectExit(r, 4)
    const res = resultOf(r)
    const v2 = res.release as string
    await expectServing(f, v1, '1.0.0')
    // switched and put back: the new release is kept there for inspection; never switched: removed
    for (const root of f.roots.slice(0, 4)) expect(releasesOf(root)).toContain(v2)
    for (const root of f.roots.slice(4)) expect(releasesOf(root)).toEqual([v1])
    expect(res.error).toMatchObject({ stage: 'verify', host: 'h4' })
    expect(res.hostResults?.map(h => [h.name, h.result, h.before, h.after])).toEqual([
      ['h1', 'rolled-back', v1, v1],
      ['h2', 'rolled-back', v1, v1],
      ['h3', 'rolled-back', v1, v1],
      ['h4', 'rolled-back', v1, v1],
      ['h5', 'not-switched', v1, v1],
      ['h6', 'not-switched', v1, v1]
    ])
    expect(hostResult(res, 'h4')?.error).toMatch(/^verify command .* failed on h4 \(exit 1\): broken here/)
    expect(hostResult(res, 'h1')?.error).toBeUndefined()
    expect(hostResult(res, 'h5')?.stage).toBe('deploy')
    // batches 1 and 2 switched, batch 3 never started
    expect(res.stages.filter(s => s.name === 'switch').map(s => [s.batch, s.status])).toEqual([
      [1, 'ok'],
      [2, 'ok']
    ])
    expect(lastLog(f.p.logDir)).not.toContain('batch 3 of 3')
  })

  test('a ramp [1, "50%"] over four hosts switches 1, then 2, then 1, waiting between batches', async () => {
    const f = await fleet('ramp', pool.slice(0, 4), {
      config: c => ({ ...c, rollout: { batch: [1, '50%'], wait: '200ms' } })
    })
    const release = await deployOk(f, '1.0.0')
    for (const root of f.roots) expect(currentOf(root)).toBe(`releases/${release}`)
    const lines = lastLog(f.p.logDir).split('\n')
    const at = (re: RegExp) => lines.findIndex(l => re.test(l))
    const switched = (h: string) => at(new RegExp(`\\[switch\\] \\[${h}\\] current -> releases/${release}$`))
    const verified = (n: number) => at(new RegExp(`\\[verify\\] verify done \\(batch ${n} of 3\\)`))
    expect(
      lines.filter(l => /\] batch \d of 3: /.test(l)).map(l => l.replace(/^.*\] batch/, 'batch'))
    ).toEqual([
      'batch 1 of 3: h1',
      'batch 1 of 3: h1',
      'batch 2 of 3: h2, h3',
      'batch 2 of 3: h2, h3',
      'batch 3 of 3: h4',
      'batch 3 of 3: h4'
    ])
    // each batch verified before the next one switched
    expect(switched('h1')).toBeLessThan(verified(1))
    expect(verified(1)).toBeLessThan(Math.min(switched('h2'), switched('h3')))
    expect(Math.max(switched('h2'), switched('h3'))).toBeLessThan(verified(2))
    expect(verified(2)).toBeLessThan(switched('h4'))
    expect(at(/waiting 0\.2 s \(rollout\.wait\)/)).toBeGreaterThan(verified(1))
    // one packed upload for the whole fleet
    expect(lines.filter(l => /\[deploy\] \[runner\] packed /.test(l))).toHaveLength(1)

    // a rollback goes back the same way, batch by batch
    const v2 = await deployOk(f, '2.0.0')
    expect(v2).not.toBe(release)
    process.chdir(f.p.dir)
    const back = await f.p.run(['rollback', '--json'])
    expectExit(back, 0)
    await expectServing(f, release, '1.0.0')
    const rlog = lastLog(f.p.logDir)
    expect(rlog).toContain('safe-deploy rollback of ledger to h1, h2, h3, h4')
    expect(rlog).toContain('[switch] batch 3 of 3: h4')
    expect(resultOf(back).hostResults?.map(h => [h.name, h.before, h.after, h.result])).toEqual(
      f.names.map(n => [n, v2, release, 'ok'])
    )
  })

  test('a host whose sshd stops after staging: no host switches, staged releases removed where reachable; exit 3', async () => {
    const lost = await startSshd({ extraConfig: fastShell() })
    const marks = tempDir('marks-')
    const pause = pausePoint(marks, 'migrate')
    const f = await fleet('drop', [pool[0] as SshHost, pool[1] as SshHost, lost], {
      config: c => ({ ...c, stages: { ...(c.stages as Config), migrate: pause.shell } })
    })
    const v1 = await deployOk(f, '1.0.0')
    f.p.app({ version: '2.0.0' })
    pause.arm()
    const run = f.p.deploy(['--json'])
    // every host staged (the migration runs after the deploy stage, on the primary): h3 goes down
    await pause.reached()
    await lost.stop({ killSessions: true })
    pause.release()
    const r = await run
    expectExit(r, 3)
    const res = resultOf(r)
    expect(res.error).toMatchObject({ stage: 'switch', host: 'h3' })
    expect(res.error?.message).toMatch(/before any host switches on h3/)
    // h3's app still runs (only its sshd went down), so it is asked too
    await expectServing(f, v1, '1.0.0')
    expect(releasesOf(f.roots[0] as string)).toEqual([v1])
    expect(releasesOf(f.roots[1] as string)).toEqual([v1])
    expect(hostResult(res, 'h3')).toMatchObject({ result: 'failed', stage: 'switch' })
    expect(hostResult(res, 'h1')).toMatchObject({ result: 'not-switched' })
  })

  test('SIGINT between batches: stops before the next batch and undoes what was switched; exit 4', async () => {
    const f = await fleet('sigint', pool.slice(0, 3))
    const v1 = await deployOk(f, '1.0.0')
    // now one host at a time, with a long pause between batches
    setRollout(f, { batch: 1, wait: '60s' })
    f.p.app({ version: '2.0.0' })
    const proc = spawnCli(['deploy', '--json', '--config', f.p.configFile], f.p.env, f.p.dir)
    await proc.line(/waiting 60 s \(rollout\.wait\)/, 60_000).catch(e => {
      throw new Error(`${String(e)}\n${proc.stderr()}`)
    })
    const cancelled = proc.cancel()
    const late = await Promise.race([
      cancelled.then(() => false),
      new Promise(done => setTimeout(() => done(true), 30_000))
    ])
    if (late) throw new Error(`still running 30 s after SIGINT:\n${proc.stderr()}`)
    const r = await proc.exited
    expectExit(r, 4)
    const res = resultOf(r)
    expect(res.error?.message).toMatch(/^interrupted before batch 2 of 3 \(h2\) started/)
    await expectServing(f, v1, '1.0.0')
    expect(releasesOf(f.roots[1] as string)).toEqual([v1])
    expect(res.hostResults?.map(h => h.result)).toEqual(['rolled-back', 'not-switched', 'not-switched'])
  })

  test('a graceful role inside batches: its host reloads, the others restart; the lock renewed through the waits', async () => {
    const f = await fleet('graceful', pool.slice(0, 3), {
      roles: [[], ['hup'], []],
      config: c => ({
        ...c,
        lock: { ttl: '1500ms' },
        rollout: { batch: 1, wait: '2s' },
        roles: {
          hup: {
            switch: {
              strategy: 'graceful',
              reload: `echo "$SAFE_DEPLOY_RELEASE" >> "$SAFE_DEPLOY_SHARED/reloads"; ${RESTART}`
            }
          }
        }
      })
    })
    const release = await deployOk(f, '1.0.0')
    await expectServing(f, release, '1.0.0')
    expect(readFileSync(join(f.roots[1] as string, 'shared', 'reloads'), 'utf8')).toBe(`${release}\n`)
    expect(existsSync(join(f.roots[0] as string, 'shared', 'reloads'))).toBe(false)
    const log = lastLog(f.p.logDir)
    expect(log).toMatch(/\[switch\] \[h2\] \$ echo "\$SAFE_DEPLOY_RELEASE" >> /)
    // two waits of 2 s under a 1.5 s lock: renewed, never lost
    expect(log.match(/waiting 2 s \(rollout\.wait\)/g)).toHaveLength(2)
    expect(log).not.toMatch(/lock was lost/)
    expect(lockExists(f.roots[0] as string)).toBe(false)
  })

  test('the Action killed (SIGKILL) between batches: the post step puts back every host it switched', async () => {
    const f = await fleet('sigkill', pool.slice(0, 3))
    const v1 = await deployOk(f, '1.0.0')
    setRollout(f, { batch: 2, wait: '60s' })
    f.p.app({ version: '2.0.0' })
    const main = actionStep(f.p, 'main')
    const proc = spawnActionSource('index', main.env, f.p.dir)
    await proc.line(/waiting 60 s \(rollout\.wait\)/, 60_000)
    proc.child.kill('SIGKILL')
    expect((await proc.exited).signal).toBe('SIGKILL')
    // batch 1 (h1, h2) serves the new release, h3 the old one
    expect(await answer(f.ports[0] as number)).toBe('version 2.0.0')
    expect(await answer(f.ports[2] as number)).toBe('version 1.0.0')
    const post = actionStep(f.p, 'post')
    const state = Object.fromEntries(Object.entries(main.state()).map(([k, v]) => [`STATE_${k}`, v]))
    const r = await spawnActionSource('post', { ...post.env, ...state }, f.p.dir).exited
    expectExit(r, 0)
    await expectServing(f, v1, '1.0.0')
    expect(lockExists(f.roots[0] as string)).toBe(false)
  })
})
