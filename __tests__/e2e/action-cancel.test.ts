/**
 * The GitHub Action as the runner runs it: the bundled `node dist/index.js` (main step) and `node dist/post.js`
 * (post step) as child processes, inputs as INPUT_* variables, GITHUB_OUTPUT / GITHUB_STATE /
 * GITHUB_STEP_SUMMARY files, against a real sshd. The post step gets the main step's saved state as the runner
 * passes it: STATE_<name> variables parsed from the main step's GITHUB_STATE file.
 *
 * A cancelled job: the runner sends SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that; then the post step
 * runs (`post-if: always()`). These tests use dist/: run `npm run bundle` after changing src/.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fastShell, freePort, startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { pausePoint, type PausePoint } from './harness/pause.js'
import { httpGet } from './harness/app.js'
import { portPidFile, startNginx, writeBlueGreenApp, type Nginx } from './harness/nginx.js'
import { expectExit, resultOf, spawnAction } from './harness/cliproc.js'
import {
  actionStep,
  answer,
  currentOf,
  historyOf,
  lockExists,
  q,
  quickProject,
  releasesOf,
  stateEnv,
  stopApp,
  type Project
} from './support.js'

let host: SshHost
const pidFiles: string[] = []
const repo = fileURLToPath(new URL('../..', import.meta.url))

beforeAll(async () => {
  if (!existsSync(join(repo, 'dist', 'index.js')) || !existsSync(join(repo, 'dist', 'post.js')))
    throw new Error('dist/index.js and dist/post.js are missing: run `npm run bundle` first')
  host = await startSshd({ extraConfig: fastShell() })
})

const cleanups: (() => Promise<void>)[] = []

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  for (const c of cleanups) await c()
  await stopAll()
})

type Config = Record<string, unknown>

interface Case {
  p: Project
  root: string
}

/** A project on `host` with small retries, so that a failing check fails in seconds. */
async function setup(name: string, config: (c: Config) => Config = c => c): Promise<Case> {
  const { p, root, pidFile } = await quickProject(host, name, config)
  pidFiles.push(pidFile)
  return { p, root }
}

async function deployOk(c: Case, version: string): Promise<string> {
  process.chdir(c.p.dir)
  c.p.app({ version })
  const r = await c.p.deploy(['--json'])
  expectExit(r, 0)
  return resultOf(r).release as string
}

/** One step's runner files (each step gets its own) and the environment the runner gives the step. */
const step = (c: Case, name: string, extra: NodeJS.ProcessEnv = {}) => actionStep(c.p, name, extra)

/** The post step as the runner runs it after the main step: its step files, and the state the main step saved. */
async function runPostStep(c: Case, state: Record<string, string>, extra: NodeJS.ProcessEnv = {}) {
  const postStep = step(c, 'post', extra)
  const r = await spawnAction('post', { ...postStep.env, ...stateEnv(state) }, c.p.dir).exited
  return { postStep, r }
}

/** `::error` workflow commands (annotations) in a step's log. */
const errorAnnotations = (stdout: string) => stdout.split('\n').filter(l => l.startsWith('::error'))

describe('the bundled Action (dist/index.js)', () => {
  test('a failed verify gives one ::error:: annotation: the verdict', async () => {
    const c = await setup('action-one-error')
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0', crashAfterMs: 0 })
    const main = step(c, 'main')
    const r = await spawnAction('index', main.env, c.p.dir).exited
    expect(r.code).not.toBe(0)
    expect(main.outputs()).toMatchObject({ status: 'rolled-back', 'exit-code': '4' })
    const errors = errorAnnotations(r.stdout)
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatch(/^::error::DEPLOYMENT FAILED at verify on \S+: .*ROLLED BACK/)
    // the stage error is still in the log, as a plain line
    expect(r.stdout).toMatch(/^\[verify\] \[\S+\] FAILED: health check GET /m)
    expect(currentOf(c.root)).toBe(`releases/${v1}`)
  })

  test('SIGINT during verify (a cancelled job): undone, history, outputs, summary; exit 4', async () => {
    const marks = tempDir('marks-')
    const verify = pausePoint(marks, 'verify')
    const c = await setup('action-sigint', cfg => ({
      ...cfg,
      verify: { ...(cfg.verify as Config), command: verify.shell }
    }))
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    verify.arm()
    const main = step(c, 'main')
    const proc = spawnAction('index', main.env, c.p.dir)
    await verify.reached()
    const v2 = currentOf(c.root)?.replace(/^releases\//, '')
    expect(v2).not.toBe(v1)
    const cancel = await proc.cancel()
    verify.release()
    const r = await proc.exited
    // it ended by itself, having undone its work, before the runner's SIGTERM
    expect(r.signal).toBeNull()
    expect(cancel.sigterm).toBe(false)
    expect(r.code).toBe(4)
    expect(r.stdout).toContain('SIGINT received; stopping and undoing what this run changed')
    expect(currentOf(c.root)).toBe(`releases/${v1}`)
    expect(await answer(c.p.port)).toBe('version 1.0.0')
    expect(lockExists(c.root)).toBe(false)
    const last = historyOf(c.root).at(-1)
    expect(last).toMatchObject({ type: 'deploy', release: v2, bad: true })
    expect(['rolled-back', 'interrupted']).toContain(last?.status)
    const out = main.outputs()
    expect(out).toMatchObject({
      status: 'rolled-back',
      'exit-code': '4',
      release: v2,
      'previous-release': v1
    })
    expect(main.summary()).toContain('safe-deploy deploy: rolled-back')
    expect(main.summary()).toMatch(/DEPLOYMENT FAILED at verify on \S+: interrupted/)
    expect(errorAnnotations(r.stdout)).toHaveLength(1)
    // the main step finished the job: the post step has nothing left to do
    const post = await spawnAction('post', { ...step(c, 'post').env, ...stateEnv(main.state()) }, c.p.dir)
      .exited
    expectExit(post, 0)
    expect(post.stdout).not.toMatch(/interrupted|releasing it/)
    expect(historyOf(c.root).at(-1)).toEqual(last)
  })

  test('SIGKILL after the switch: the post step puts the previous release back and marks the release interrupted', async () => {
    const marks = tempDir('marks-')
    const verify = pausePoint(marks, 'verify')
    const c = await setup('action-sigkill', cfg => ({
      ...cfg,
      verify: { ...(cfg.verify as Config), command: verify.shell }
    }))
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    verify.arm()
    const main = step(c, 'main')
    const proc = spawnAction('index', main.env, c.p.dir)
    await verify.reached()
    // the runner gives up on the main step: SIGKILL, no chance to undo
    proc.child.kill('SIGKILL')
    const killed = await proc.exited
    verify.release()
    expect(killed.signal).toBe('SIGKILL')
    const v2 = currentOf(c.root)?.replace(/^releases\//, '') as string
    expect(v2).not.toBe(v1)
    expect(await answer(c.p.port)).toBe('version 2.0.0')
    expect(lockExists(c.root)).toBe(true)

    const { postStep, r } = await runPostStep(c, main.state())
    expectExit(r, 0)
    expect(currentOf(c.root)).toBe(`releases/${v1}`)
    expect(await answer(c.p.port)).toBe('version 1.0.0')
    expect(await answer(c.p.port, '/health')).toBe('ok 1.0.0')
    expect(lockExists(c.root)).toBe(false)
    expect(historyOf(c.root).at(-1)).toMatchObject({
      type: 'deploy',
      release: v2,
      previous: v1,
      status: 'interrupted',
      bad: true,
      verified: false
    })
    expect(r.stdout).toContain(`put back releases/${v1}`)
    expect(r.stdout).toContain('lock released')
    expect(postStep.summary()).toContain(`put back releases/${v1}`)
    expect(postStep.summary()).toContain(`marked ${v2} interrupted`)
    expect(errorAnnotations(r.stdout)).toHaveLength(0)

    // the next deploy goes through; a plain rollback from it skips the interrupted release
    const v3 = await deployOk(c, '3.0.0')
    const rb = await c.p.run(['rollback', '--json'])
    expectExit(rb, 0)
    expect(resultOf(rb).release).toBe(v1)
    expect(currentOf(c.root)).toBe(`releases/${v1}`)
    expect(v3).not.toBe(v2)
  })

  /** Starts the main step, waits for `point` (armed), SIGKILLs the main step; returns its saved state. */
  async function killedAt(c: Case, point: PausePoint): Promise<Record<string, string>> {
    point.arm()
    const main = step(c, 'main')
    const proc = spawnAction('index', main.env, c.p.dir)
    await point.reached()
    proc.child.kill('SIGKILL')
    expect((await proc.exited).signal).toBe('SIGKILL')
    point.release()
    return main.state()
  }

  test('SIGKILL after the switch of a first deploy: the post step says there was no previous release', async () => {
    const marks = tempDir('marks-')
    const verify = pausePoint(marks, 'verify')
    const c = await setup('action-sigkill-first', cfg => ({
      ...cfg,
      verify: { ...(cfg.verify as Config), command: verify.shell }
    }))
    c.p.app({ version: '1.0.0' })
    const state = await killedAt(c, verify)
    const v1 = currentOf(c.root)?.replace(/^releases\//, '') as string
    expect(v1).toMatch(/^\d{8}T\d{6}Z-/)
    const { postStep, r } = await runPostStep(c, state)
    expectExit(r, 0)
    // nothing served before: `current` is gone, the release is marked, the lock is free
    expect(currentOf(c.root)).toBeUndefined()
    expect(r.stdout).toContain('there was no previous release (a first deploy)')
    expect(postStep.summary()).toContain('there was no previous release (a first deploy)')
    expect(historyOf(c.root).at(-1)).toMatchObject({
      release: v1,
      previous: null,
      status: 'interrupted',
      bad: true
    })
    expect(lockExists(c.root)).toBe(false)
  })

  test('SIGINT during verify, then SIGKILL while the undo restarts the previous release: the post step finishes the undo', async () => {
    const marks = tempDir('marks-')
    const verify = pausePoint(marks, 'verify')
    const restart = pausePoint(marks, 'restart')
    const c = await setup('action-sigkill-undo', cfg => ({
      ...cfg,
      stages: { ...(cfg.stages as Config), restart: `${restart.shell}; bin/restart` },
      verify: { ...(cfg.verify as Config), command: verify.shell }
    }))
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    verify.arm()
    const main = step(c, 'main')
    const proc = spawnAction('index', main.env, c.p.dir)
    await verify.reached()
    const v2 = currentOf(c.root)?.replace(/^releases\//, '') as string
    // the undo's restart of v1 hangs: the runner's patience (10 s) runs out first
    restart.arm()
    proc.child.kill('SIGINT')
    await restart.reached()
    proc.child.kill('SIGKILL')
    expect((await proc.exited).signal).toBe('SIGKILL')
    restart.release()
    verify.release()
    expect(lockExists(c.root)).toBe(true)

    const { r } = await runPostStep(c, main.state())
    expectExit(r, 0)
    expect(currentOf(c.root)).toBe(`releases/${v1}`)
    expect(await answer(c.p.port)).toBe('version 1.0.0')
    expect(await answer(c.p.port, '/health')).toBe('ok 1.0.0')
    expect(historyOf(c.root).at(-1)).toMatchObject({ release: v2, status: 'interrupted', bad: true })
    expect(lockExists(c.root)).toBe(false)
  })

  test('SIGINT during verify, SIGKILL after the undo put the previous release back: the post step records and unlocks', async () => {
    const marks = tempDir('marks-')
    const verify = pausePoint(marks, 'verify')
    const c = await setup('action-sigkill-after-undo', cfg => ({
      ...cfg,
      verify: { ...(cfg.verify as Config), command: verify.shell }
    }))
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    verify.arm()
    const main = step(c, 'main')
    const proc = spawnAction('index', main.env, c.p.dir)
    await verify.reached()
    const v2 = currentOf(c.root)?.replace(/^releases\//, '') as string
    // the undo's check of the restored v1 runs the verify command again: it hangs there
    verify.arm()
    proc.child.kill('SIGINT')
    await verify.reached()
    proc.child.kill('SIGKILL')
    await proc.exited
    verify.release()
    expect(currentOf(c.root)).toBe(`releases/${v1}`)
    expect(lockExists(c.root)).toBe(true)

    const { r } = await runPostStep(c, main.state())
    expectExit(r, 0)
    expect(r.stdout).toContain('the run had already put back what served before on')
    expect(r.stdout).toContain('previous release verified healthy on')
    expect(r.stdout).not.toContain('current -> releases/')
    expect(currentOf(c.root)).toBe(`releases/${v1}`)
    expect(await answer(c.p.port)).toBe('version 1.0.0')
    expect(historyOf(c.root).at(-1)).toMatchObject({ release: v2, status: 'interrupted', bad: true })
    expect(lockExists(c.root)).toBe(false)
  })

  test('a manual rollback killed after its switch: the post step puts back what served when it started', async () => {
    const marks = tempDir('marks-')
    const verify = pausePoint(marks, 'verify')
    const c = await setup('action-sigkill-rollback', cfg => ({
      ...cfg,
      verify: { ...(cfg.verify as Config), command: verify.shell }
    }))
    const v1 = await deployOk(c, '1.0.0')
    const v2 = await deployOk(c, '2.0.0')
    const before = historyOf(c.root).length
    verify.arm()
    const main = step(c, 'main', { INPUT_COMMAND: 'rollback' })
    const proc = spawnAction('index', main.env, c.p.dir)
    await verify.reached()
    expect(currentOf(c.root)).toBe(`releases/${v1}`)
    proc.child.kill('SIGKILL')
    await proc.exited
    verify.release()
    const { r } = await runPostStep(c, main.state(), { INPUT_COMMAND: 'rollback' })
    expectExit(r, 0)
    expect(currentOf(c.root)).toBe(`releases/${v2}`)
    expect(await answer(c.p.port)).toBe('version 2.0.0')
    const history = historyOf(c.root)
    expect(history).toHaveLength(before + 1)
    expect(history.at(-1)).toMatchObject({
      type: 'rollback',
      release: v1,
      previous: v2,
      status: 'interrupted'
    })
    expect(history.at(-1)?.bad).toBeUndefined()
    expect(lockExists(c.root)).toBe(false)
  })

  test('SIGKILL after a migration and the switch: the post step restores the database, then the code', async () => {
    const marks = tempDir('marks-')
    const verify = pausePoint(marks, 'verify')
    const c = await setup('action-sigkill-migrate', cfg => ({
      ...cfg,
      backup: { databases: [{ engine: 'sqlite', path: 'shared/data/app.sqlite3' }] },
      stages: {
        ...(cfg.stages as Config),
        // a migration that is only in v2: it adds a table and rewrites the rows
        migrate: {
          command:
            'if [ -f MIGRATE_V2 ]; then sqlite3 "$SAFE_DEPLOY_SHARED/data/app.sqlite3" "CREATE TABLE tags (id INTEGER); UPDATE items SET name = name || \' (v2)\';"; fi'
        }
      },
      verify: { ...(cfg.verify as Config), command: verify.shell }
    }))
    const db = join(c.root, 'shared', 'data', 'app.sqlite3')
    const sqlite = (sql: string) => execFileSync('sqlite3', [db], { input: sql, encoding: 'utf8' })
    host.run(`mkdir -p ${q(join(c.root, 'shared', 'data'))}`)
    sqlite(
      "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'apple'), (2, 'pear');"
    )
    const v1 = await deployOk(c, '1.0.0')
    const before = sqlite('.schema') + sqlite('SELECT * FROM items;')
    c.p.app({ version: '2.0.0' })
    writeFileSync(join(c.p.dir, 'app', 'MIGRATE_V2'), '')
    const state = await killedAt(c, verify)
    expect(sqlite('SELECT name FROM items WHERE id = 1;').trim()).toBe('apple (v2)')
    const backup = JSON.parse(state.progress as string).backup as string
    expect(backup).toMatch(/^ledger_/)

    const { r } = await runPostStep(c, state)
    expectExit(r, 0)
    expect(sqlite('.schema') + sqlite('SELECT * FROM items;')).toBe(before)
    expect(r.stdout).toContain(`database restored from the pre-deploy backup ${backup}`)
    expect(currentOf(c.root)).toBe(`releases/${v1}`)
    expect(await answer(c.p.port)).toBe('version 1.0.0')
    expect(historyOf(c.root).at(-1)).toMatchObject({
      status: 'interrupted',
      bad: true,
      backup,
      database: 'restored'
    })
    expect(lockExists(c.root)).toBe(false)
  })

  test('SIGKILL during the build: the post step removes the unfinished release, nothing went live', async () => {
    const marks = tempDir('marks-')
    const build = pausePoint(marks, 'build')
    const c = await setup('action-sigkill-build', cfg => ({
      ...cfg,
      stages: { ...(cfg.stages as Config), build: `echo built > BUILD_OK; ${build.shell}` }
    }))
    const v1 = await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    const state = await killedAt(c, build)
    const half = releasesOf(c.root).filter(r => r !== v1)
    expect(half).toHaveLength(1)
    const { r } = await runPostStep(c, state)
    expectExit(r, 0)
    expect(releasesOf(c.root)).toEqual([v1])
    expect(currentOf(c.root)).toBe(`releases/${v1}`)
    expect(await answer(c.p.port)).toBe('version 1.0.0')
    expect(r.stdout).toContain(`removed the unfinished release ${half[0]}`)
    expect(historyOf(c.root).at(-1)).toMatchObject({ release: half[0], status: 'interrupted', bad: true })
    expect(lockExists(c.root)).toBe(false)
  })

  test("the lock is no longer the killed run's: the post step changes nothing and says so", async () => {
    const marks = tempDir('marks-')
    const verify = pausePoint(marks, 'verify')
    const c = await setup('action-sigkill-lock-taken', cfg => ({
      ...cfg,
      verify: { ...(cfg.verify as Config), command: verify.shell }
    }))
    await deployOk(c, '1.0.0')
    c.p.app({ version: '2.0.0' })
    const state = await killedAt(c, verify)
    const v2 = currentOf(c.root)
    // a person released the dead run's lock and another run holds it now
    expectExit(await c.p.run(['lock', 'release']), 0)
    const other = host.run(
      `mkdir ${q(join(c.root, '.safe-deploy', 'lock'))} && printf '{"who":"someone","token":"theirs"}\\n' > ${q(join(c.root, '.safe-deploy', 'lock', 'owner.json'))} && echo ok`
    )
    expect(other.trim()).toBe('ok')
    const before = historyOf(c.root)
    const { r } = await runPostStep(c, state)
    expect(r.code).not.toBe(0)
    expect(errorAnnotations(r.stdout)).toHaveLength(1)
    expect(errorAnnotations(r.stdout)[0]).toContain('is no longer this run')
    expect(currentOf(c.root)).toBe(v2)
    expect(historyOf(c.root)).toEqual(before)
    expect(readFileSync(join(c.root, '.safe-deploy', 'lock', 'owner.json'), 'utf8')).toContain('"theirs"')
  })

  describe('blue-green behind nginx', () => {
    let nginx: Nginx
    beforeAll(async () => {
      nginx = await startNginx({ initialPort: await freePort() })
      cleanups.push(() => nginx.stop())
    })

    test('SIGKILL after the switch: the post step flips nginx back and stops the new port', async () => {
      const marks = tempDir('marks-')
      const verify = pausePoint(marks, 'verify')
      const a = await freePort()
      let b = await freePort()
      while (b === a) b = await freePort()
      const ports: [number, number] = [a, b]
      const c = await setup('action-sigkill-bluegreen', cfg => ({
        ...cfg,
        env: { ...(cfg.env as Record<string, string>), HOST: '127.0.0.1' },
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
          drain: '300ms',
          timeout: '5s'
        },
        verify: {
          http: { url: `${nginx.url}/`, expect_status: 200, retries: 10, interval: '200ms' },
          command: verify.shell
        }
      }))
      for (const port of ports) pidFiles.push(portPidFile(c.root, port))
      c.p.app = o => writeBlueGreenApp(join(c.p.dir, 'app'), o)
      const v1 = await deployOk(c, '1.0.0')
      const viaProxy = async () => (await httpGet(`${nginx.url}/`)).body.trim()
      expect(await viaProxy()).toBe('version 1.0.0')
      c.p.app({ version: '2.0.0' })
      const state = await killedAt(c, verify)
      // killed with v2 live on the second port
      expect(await viaProxy()).toBe('version 2.0.0')
      expect(readFileSync(nginx.upstreamFile, 'utf8')).toBe(`server 127.0.0.1:${ports[1]};\n`)

      const { r } = await runPostStep(c, state)
      expectExit(r, 0)
      expect(readFileSync(nginx.upstreamFile, 'utf8')).toBe(`server 127.0.0.1:${ports[0]};\n`)
      expect(await viaProxy()).toBe('version 1.0.0')
      expect(currentOf(c.root)).toBe(`releases/${v1}`)
      expect(readFileSync(join(c.root, '.safe-deploy', 'active-port'), 'utf8')).toBe(`${ports[0]} ${v1}\n`)
      // the new port was stopped
      expect((await httpGet(`http://127.0.0.1:${ports[1]}/health`, 1000)).status).toBe(0)
      expect(r.stdout).toContain(`stopped port ${ports[1]}`)
      expect(historyOf(c.root).at(-1)).toMatchObject({ status: 'interrupted', bad: true, previous: v1 })
      expect(lockExists(c.root)).toBe(false)
    })
  })
})
