/**
 * Re-runs of old deploy jobs (a GitHub re-run, GitLab's environment "Rollback" button re-running the old job),
 * end to end against a real sshd: deploying a commit that history has as an older release rolls back to that
 * release (the rollback flow: lock, history, database policy, verify), or is refused (exit 2) when that
 * release is bad or was pruned; deploying the current release's commit again is a normal deploy; `redeploy`
 * builds it anew.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { rmSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { fastShell, startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { startPostgres } from './harness/db.js'
import { expectExit, resultOf, spawnAction } from './harness/cliproc.js'
import {
  actionStep,
  answer,
  cli,
  currentOf,
  historyOf,
  lastLog,
  lockExists,
  migrationProject,
  quickProject,
  releasesOf,
  stopApp,
  withMigrations,
  type Project
} from './support.js'

let host: SshHost
const pidFiles: string[] = []
const cleanups: (() => Promise<void>)[] = []

beforeAll(async () => {
  host = await startSshd({ extraConfig: fastShell() })
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  for (const c of cleanups) await c()
  await stopAll()
})

type Config = Record<string, unknown>

const A = 'a'.repeat(40)
const B = 'b'.repeat(40)
const C = 'c'.repeat(40)

async function setup(name: string, extra: (c: Config) => Config = c => c) {
  const { p, root, pidFile } = await quickProject(host, name, extra)
  pidFiles.push(pidFile)
  return { p, root }
}

/** A deploy of `version` as CI runs it for `commit` (GITHUB_SHA). */
function deployCommit(p: Project, commit: string, version: string, extra: string[] = []) {
  p.app({ version })
  return cli(['deploy', '--json', '--config', p.configFile, ...extra], { ...p.env, GITHUB_SHA: commit })
}

async function deployed(p: Project, commit: string, version: string): Promise<string> {
  const r = await deployCommit(p, commit, version)
  expectExit(r, 0)
  return resultOf(r).release as string
}

describe('deploying an older release commit again', () => {
  test('deploy A, deploy B, deploy A again: a rollback to A (its old release dir), exit 0', async () => {
    const { p, root } = await setup('rerun-rollback')
    const a = await deployed(p, A, '1.0.0')
    const b = await deployed(p, B, '2.0.0')
    expect(a).toMatch(/-aaaaaaa$/)
    // the re-run job checks out A again
    const r = await deployCommit(p, A, '1.0.0')
    expectExit(r, 0)
    const res = resultOf(r)
    expect(res.command).toBe('rollback')
    expect(res.release).toBe(a)
    expect(res.previousRelease).toBe(b)
    expect(currentOf(root)).toBe(`releases/${a}`)
    expect(releasesOf(root)).toEqual([a, b])
    expect(await answer(p.port)).toBe('version 1.0.0')
    expect(historyOf(root).at(-1)).toMatchObject({
      type: 'rollback',
      release: a,
      from: b,
      status: 'success',
      commit: A
    })
    expect(lastLog(p.logDir)).toContain(
      `commit aaaaaaa is release ${a}, deployed before; rolling back to it instead of deploying it again (redeploy: true to build it anew)`
    )
    expect(lockExists(root)).toBe(false)
    // B's commit again, now that a rollback left B: B counts as bad (as after any rollback), so refused
    const again = await deployCommit(p, B, '2.0.0')
    expectExit(again, 2)
    expect(again.stderr).toContain(`roll back to it anyway with \`safe-deploy rollback --to ${b}\``)
    expect(currentOf(root)).toBe(`releases/${a}`)
  })

  test("the current release's commit again: a normal deploy (a new release)", async () => {
    const { p, root } = await setup('rerun-current')
    const a = await deployed(p, A, '1.0.0')
    const r = await deployCommit(p, A, '1.0.1')
    expectExit(r, 0)
    const res = resultOf(r)
    expect(res.command).toBe('deploy')
    expect(res.release).not.toBe(a)
    expect(currentOf(root)).toBe(`releases/${res.release}`)
    expect(await answer(p.port)).toBe('version 1.0.1')
  })

  test('redeploy (--redeploy, or redeploy: true in the config) builds the old commit anew', async () => {
    const { p, root } = await setup('rerun-redeploy')
    const a = await deployed(p, A, '1.0.0')
    await deployed(p, B, '2.0.0')
    const r = await deployCommit(p, A, '1.0.0', ['--redeploy'])
    expectExit(r, 0)
    const res = resultOf(r)
    expect(res.command).toBe('deploy')
    expect(res.release).not.toBe(a)
    expect(res.release).toMatch(/-aaaaaaa$/)
    expect(currentOf(root)).toBe(`releases/${res.release}`)
    expect(historyOf(root).at(-1)).toMatchObject({ type: 'deploy', commit: A, status: 'success' })
  })

  test('redeploy: true in the config', async () => {
    const { p, root } = await setup('rerun-redeploy-config', c => ({ ...c, redeploy: true }))
    const a = await deployed(p, A, '1.0.0')
    await deployed(p, B, '2.0.0')
    const r = await deployCommit(p, A, '1.0.0')
    expectExit(r, 0)
    expect(resultOf(r).command).toBe('deploy')
    expect(currentOf(root)).not.toBe(`releases/${a}`)
  })

  test('the old release was pruned: refused (exit 2), naming redeploy and rollback --to; nothing changed', async () => {
    const { p, root } = await setup('rerun-pruned')
    const a = await deployed(p, A, '1.0.0')
    const b = await deployed(p, B, '2.0.0')
    await deployed(p, C, '3.0.0')
    rmSync(join(root, 'releases', a), { recursive: true, force: true })
    const r = await deployCommit(p, A, '1.0.0')
    expectExit(r, 2)
    expect(r.stderr).toContain(
      `commit aaaaaaa was release ${a}, deployed before and since removed from the hosts (pruned); refusing to deploy that old code over a newer database: build it anew with redeploy: true (--redeploy), or roll back to a release that exists with \`safe-deploy rollback --to\``
    )
    expect(releasesOf(root)).not.toContain(a)
    expect(releasesOf(root)).toContain(b)
    expect(currentOf(root)).toMatch(/-ccccccc$/)
    expect(lockExists(root)).toBe(false)
    expect(await answer(p.port)).toBe('version 3.0.0')
  })

  test('the old release is marked bad: refused (exit 2), naming `rollback --to` it', async () => {
    const { p, root } = await setup('rerun-bad')
    const a = await deployed(p, A, '1.0.0')
    const b = await deployed(p, B, '2.0.0')
    // rolling back from B marks B bad; back on A... then forward to C
    const rb = await p.run(['rollback', '--json'])
    expectExit(rb, 0)
    expect(currentOf(root)).toBe(`releases/${a}`)
    await deployed(p, C, '3.0.0')
    const r = await deployCommit(p, B, '2.0.0')
    expectExit(r, 2)
    expect(r.stderr).toContain(
      `commit bbbbbbb is release ${b}, deployed before and marked bad since (it failed its checks, or a rollback left it); refusing to deploy it again: roll back to it anyway with \`safe-deploy rollback --to ${b}\`, or build it anew with redeploy: true (--redeploy)`
    )
    expect(currentOf(root)).toMatch(/-ccccccc$/)
    expect(lockExists(root)).toBe(false)
  })

  test('a deploy of A that failed before (rolled back), then A again: a normal deploy (a retry)', async () => {
    const { p, root } = await setup('rerun-retry')
    await deployed(p, B, '1.0.0')
    p.app({ version: '2.0.0', healthy: false })
    const failed = await cli(['deploy', '--json', '--config', p.configFile], { ...p.env, GITHUB_SHA: A })
    expectExit(failed, 4)
    const r = await deployCommit(p, A, '2.0.1')
    expectExit(r, 0)
    expect(resultOf(r).command).toBe('deploy')
    expect(currentOf(root)).toBe(`releases/${resultOf(r).release}`)
  })
  test('the Action (dist/index.js): a re-run job rolls back; with input redeploy it deploys anew', async () => {
    const { p, root } = await setup('rerun-action')
    const a = await deployed(p, A, '1.0.0')
    const b = await deployed(p, B, '2.0.0')
    p.app({ version: '1.0.0' })
    const rerun = actionStep(p, 'rerun', { GITHUB_SHA: A })
    const r = await spawnAction('index', rerun.env, p.dir).exited
    expectExit(r, 0)
    expect(r.stdout).toContain(`commit aaaaaaa is release ${a}, deployed before; rolling back to it`)
    expect(rerun.outputs()).toMatchObject({ status: 'success', release: a, 'previous-release': b })
    expect(rerun.summary()).toContain('safe-deploy rollback: success')
    expect(currentOf(root)).toBe(`releases/${a}`)
    const fresh = actionStep(p, 'redeploy', { GITHUB_SHA: B, INPUT_REDEPLOY: 'true' })
    p.app({ version: '2.0.0' })
    expectExit(await spawnAction('index', fresh.env, p.dir).exited, 0)
    const release = fresh.outputs().release as string
    expect(release).not.toBe(b)
    expect(release).toMatch(/-bbbbbbb$/)
    expect(currentOf(root)).toBe(`releases/${release}`)
  })
})

describe('the CLI in a git checkout (no CI commit)', () => {
  test('a clean checkout of an older commit rolls back to its release; with local changes it deploys them', async () => {
    const { p, root } = await setup('rerun-git')
    const src = join(p.dir, 'app')
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', src, ...args], {
        encoding: 'utf8',
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 't',
          GIT_AUTHOR_EMAIL: 't@t',
          GIT_COMMITTER_NAME: 't',
          GIT_COMMITTER_EMAIL: 't@t'
        }
      }).trim()
    git('init', '-q')
    const commit = (version: string) => {
      p.app({ version })
      git('add', '-A')
      git('commit', '-qm', version)
      return git('rev-parse', 'HEAD')
    }
    const a = commit('1.0.0')
    const deploy = async () => {
      const r = await cli(['deploy', '--json', '--config', p.configFile], p.env)
      expectExit(r, 0)
      return resultOf(r)
    }
    const ra = (await deploy()).release as string
    expect(ra.endsWith(a.slice(0, 7))).toBe(true)
    commit('2.0.0')
    await deploy()
    git('checkout', '-q', a)
    const back = await deploy()
    expect(back.command).toBe('rollback')
    expect(currentOf(root)).toBe(`releases/${ra}`)
    // a local change on top of an older commit is not that release's code: deployed as a new release
    writeFileSync(join(src, 'LOCAL_CHANGE'), 'x')
    await deployCommit(p, B, '2.0.0') // back to a release that is not A's
    const changed = await deploy()
    expect(changed.command).toBe('deploy')
    expect(currentOf(root)).toBe(`releases/${changed.release}`)
  })
})

describe('a re-run across a migration', () => {
  test('the rollback flow puts the database back too (its down command), exit 0; never a migrate failure', async () => {
    const pg = await startPostgres()
    cleanups.push(() => pg.stop())
    const password = `rerun-pw-${Date.now()}`
    pg.createDatabase('rerun', 'rerun_app', password)
    const url = `postgres://rerun_app:${password}@127.0.0.1:${pg.port}/rerun`
    const root = host.root('rerun-migrate')
    pidFiles.push(join(root, 'shared', 'app.pid'))
    const p = await migrationProject({
      host,
      root,
      url,
      migrate: {
        command: 'bin/migrate up',
        revision: 'bin/migrate current',
        down: 'bin/migrate down {revision}'
      }
    })
    const M1 = { n: '001', up: 'CREATE TABLE notes (id int);\n', down: 'DROP TABLE notes;\n' }
    const M2 = { n: '002', up: 'CREATE TABLE tags (id int);\n', down: 'DROP TABLE tags;\n' }
    const version = () => pg.psql('SELECT coalesce(max(v), 0) FROM schema_version', 'rerun').trim()
    const tables = () =>
      pg
        .psql(
          "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
          'rerun'
        )
        .trim()

    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    const a = await deployed(p, A, '1.0.0')
    p.app({ version: '2.0.0' })
    withMigrations(p, [M1, M2])
    const b = await deployed(p, B, '2.0.0')
    expect(version()).toBe('2')

    // the re-run job checks out A: its tree has only migration 001
    rmSync(join(p.dir, 'app', 'migrations', '002.up.sql'))
    rmSync(join(p.dir, 'app', 'migrations', '002.down.sql'))
    const r = await deployCommit(p, A, '1.0.0')
    expectExit(r, 0)
    const res = resultOf(r)
    expect(res.command).toBe('rollback')
    expect(res.release).toBe(a)
    expect(currentOf(root)).toBe(`releases/${a}`)
    expect(version()).toBe('1')
    expect(tables()).toBe('notes,schema_version')
    expect(historyOf(root).at(-1)).toMatchObject({
      type: 'rollback',
      release: a,
      from: b,
      database: 'down',
      status: 'success'
    })
    expect(lastLog(p.logDir)).toContain('database migrated down: revision read back 1')
    expect(await answer(p.port)).toBe('version 1.0.0')
  }, 120_000)
})
