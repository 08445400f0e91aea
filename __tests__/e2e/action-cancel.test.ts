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
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fastShell, startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { pausePoint } from './harness/pause.js'
import { expectExit, readFileCommands, resultOf, spawnAction } from './harness/cliproc.js'
import { answer, currentOf, historyOf, lockExists, project, stopApp, type Project } from './support.js'

let host: SshHost
const pidFiles: string[] = []
const repo = fileURLToPath(new URL('../..', import.meta.url))

beforeAll(async () => {
  if (!existsSync(join(repo, 'dist', 'index.js')) || !existsSync(join(repo, 'dist', 'post.js')))
    throw new Error('dist/index.js and dist/post.js are missing: run `npm run bundle` first')
  host = await startSshd({ extraConfig: fastShell() })
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  await stopAll()
})

type Config = Record<string, unknown>

interface Case {
  p: Project
  root: string
}

/** A project on `host` with small retries, so that a failing check fails in seconds. */
async function setup(name: string, config: (c: Config) => Config = c => c): Promise<Case> {
  const root = host.root(name)
  const p = await project({
    hosts: [host],
    root,
    config: base =>
      config({
        ...base,
        ssh: { ...(base.ssh as Config), connect_retries: 1, connect_timeout: '3s', keepalive_interval: '1s' },
        verify: { http: { ...((base.verify as Config).http as Config), retries: 6, interval: '250ms' } }
      })
  })
  pidFiles.push(join(root, 'shared', 'app.pid'))
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
function step(c: Case, name: string, extra: NodeJS.ProcessEnv = {}) {
  const dir = tempDir(`gh-${name}-`)
  const files = {
    GITHUB_OUTPUT: join(dir, 'output'),
    GITHUB_STATE: join(dir, 'state'),
    GITHUB_STEP_SUMMARY: join(dir, 'summary.md')
  }
  for (const f of Object.values(files)) writeFileSync(f, '')
  const env: NodeJS.ProcessEnv = {
    ...c.p.env,
    ...files,
    GITHUB_ACTIONS: 'true',
    GITHUB_ACTOR: 'octocat',
    INPUT_COMMAND: 'deploy',
    INPUT_CONFIG: c.p.configFile,
    INPUT_VERBOSE: 'false',
    ...extra
  }
  return {
    env,
    outputs: () => readFileCommands(readFileSync(files.GITHUB_OUTPUT, 'utf8')),
    state: () => readFileCommands(readFileSync(files.GITHUB_STATE, 'utf8')),
    summary: () => readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8')
  }
}

/** The STATE_<name> variables the runner passes to the post step. */
function stateEnv(state: Record<string, string>): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(state).map(([k, v]) => [`STATE_${k}`, v]))
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

    const postStep = step(c, 'post')
    const r = await spawnAction('post', { ...postStep.env, ...stateEnv(main.state()) }, c.p.dir).exited
    if (process.env.E2E_DEBUG) console.log(r.stdout, r.stderr, postStep.summary(), main.state())
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
})
