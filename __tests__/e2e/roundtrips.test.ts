/**
 * SSH round trips per run (issue 12): how many remote commands a deploy and a rollback start on a host,
 * counted by the host's own sshd (LogLevel VERBOSE logs `Starting session: command ...` for every command a
 * client starts on its connection), and checked against the `$ <label>` lines a `--verbose` run logs. Counts,
 * never times. The config is the bench's (bench/README.md): tar or incremental upload, shared files and dirs,
 * `stages.restart`, an HTTP check from the host; no build, no backup, no migration.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { answer, currentOf, project, releasesOf, stopApp, type CliRun, type Project } from './support.js'

/** Deploy ≤ 6 and rollback ≤ 4 remote commands per host (issue 12's fusions). */
const DEPLOY_MAX = 6
const ROLLBACK_MAX = 4

let host: SshHost
let root: string

beforeAll(async () => {
  host = await startSshd()
  root = host.root('trips')
})

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopApp(join(host.root('stat'), 'shared', 'app.pid'))
  await stopAll()
})

/** The commands sshd started during `run`, and the `$ ` lines the run logged. */
async function counted(
  run: () => Promise<CliRun>
): Promise<{ r: CliRun; sessions: number; logged: string[] }> {
  const log = () => (existsSync(host.logFile) ? readFileSync(host.logFile, 'utf8') : '')
  const before = log().length
  const r = await run()
  const sessions = log()
    .slice(before)
    .split('\n')
    .filter(l => /Starting session: command/.test(l)).length
  const logged = r.stderr.split('\n').filter(l => /\] \$ /.test(l))
  return { r, sessions, logged }
}

function tripsProject(strategy: 'tar' | 'incremental'): Promise<Project> {
  return project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      upload: { strategy },
      // the later deploys prune: the finish script does it, in no round trip of its own
      keep_releases: 2,
      stages: { restart: 'bin/restart' }
    })
  })
}

describe('SSH round trips per run', () => {
  let first: string
  let tarTrips = DEPLOY_MAX

  test(`a tar deploy starts at most ${DEPLOY_MAX} remote commands on its host`, async () => {
    const p = await tripsProject('tar')
    p.app({ version: '1.0.0' })
    const one = await counted(() => p.deploy(['--verbose']))
    expect(one.r.code).toBe(0)
    first = releasesOf(root)[0] as string
    p.app({ version: '2.0.0' })
    const two = await counted(() => p.deploy(['--verbose']))
    expect(two.r.code).toBe(0)
    expect(await answer(p.port)).toBe('version 2.0.0')
    // the verbose log tells every command but the upload, whose stdin is the archive
    expect(two.logged.length + 1).toBe(two.sessions)
    expect(one.sessions).toBeLessThanOrEqual(DEPLOY_MAX)
    expect(two.sessions).toBeLessThanOrEqual(DEPLOY_MAX)
    tarTrips = two.sessions
  })

  test(`a rollback starts at most ${ROLLBACK_MAX} remote commands on its host`, async () => {
    const p = await tripsProject('tar')
    const back = await counted(() => p.run(['rollback', '--verbose']))
    expect(back.r.code).toBe(0)
    expect(currentOf(root)).toBe(`releases/${first}`)
    expect(await answer(p.port)).toBe('version 1.0.0')
    expect(back.logged.length).toBe(back.sessions)
    expect(back.sessions).toBeLessThanOrEqual(ROLLBACK_MAX)
  })

  test(`an incremental redeploy starts at most ${DEPLOY_MAX} remote commands on its host`, async () => {
    const p = await tripsProject('incremental')
    p.app({ version: '3.0.0' })
    const seed = await counted(() => p.deploy(['--verbose']))
    expect(seed.r.code).toBe(0)
    p.app({ version: '4.0.0' })
    const inc = await counted(() => p.deploy(['--verbose']))
    expect(inc.r.code).toBe(0)
    expect(inc.r.stderr).toMatch(/sent \d+ files, [\d.]+ KiB; linked \d+ from releases\//)
    expect(await answer(p.port)).toBe('version 4.0.0')
    expect(inc.logged.length + 1).toBe(inc.sessions)
    expect(inc.sessions).toBeLessThanOrEqual(DEPLOY_MAX)
    // its check of the base release is in preflight's inspection: no more commands than a tar deploy
    expect(inc.sessions).toBeLessThanOrEqual(tarTrips)
    expect(inc.logged.some(l => l.includes('$ find the release to link from'))).toBe(false)
    // keep_releases 2: the two oldest are gone from releases/ when the command returns
    expect(releasesOf(root)).not.toContain(first)
    expect(releasesOf(root)).toHaveLength(2)
    expect(inc.r.stderr).toContain(`pruned 2 old release(s): ${first}, `)
  })
})

describe('incremental: the base release checked by size and mtime', () => {
  test('the base is not hashed again; an edit that kept size and mtime is caught by the new release check, and the next deploy hashes the base', async () => {
    const statRoot = host.root('stat')
    const p = await project({
      hosts: [host],
      root: statRoot,
      config: c => ({ ...c, upload: { strategy: 'incremental' }, stages: { restart: 'bin/restart' } })
    })
    p.app({ version: '1.0.0' })
    expect((await p.deploy()).code).toBe(0)
    p.app({ version: '2.0.0' })
    const two = await p.deploy()
    expect(two.code).toBe(0)
    const base = readlinkSync(join(statRoot, 'current')).replace(/^releases\//, '')
    // the quick listing (sizes, mtimes) written next to its manifest when it was assembled
    expect(readFileSync(join(statRoot, '.safe-deploy', 'quick', base), 'utf8')).toContain('bin/restart')
    // an edit in place that keeps the size and the mtime (touch -r): the quick check cannot see it
    const file = join(statRoot, 'releases', base, 'bin', 'restart')
    const ref = `${file}.ref`
    expect(spawnSync('cp', ['-p', file, ref]).status).toBe(0)
    const text = readFileSync(file, 'utf8')
    writeFileSync(file, `${text.slice(0, -1)} `)
    expect(spawnSync('touch', ['-r', ref, file]).status).toBe(0)
    expect(spawnSync('rm', ['-f', ref]).status).toBe(0)
    p.app({ version: '3.0.0' })
    const three = await p.deploy(['--json'])
    // the base passed its quick check, so the new release linked the edited file: its own check fails, exit 3
    expect(three.code).toBe(3)
    expect(three.stderr).toContain('does not match its manifest after the upload')
    expect(readlinkSync(join(statRoot, 'current'))).toBe(`releases/${base}`)
    expect(await answer(p.port)).toBe('version 2.0.0')
    // the next deploy hashes the base (its quick listing was dropped) and uploads in full
    const four = await p.deploy()
    expect(four.code).toBe(0)
    expect(four.stderr).toContain(
      `full upload: releases/${base} does not match its manifest (first at "bin/restart")`
    )
    expect(await answer(p.port)).toBe('version 3.0.0')
  })
})
