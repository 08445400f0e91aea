/**
 * The Action's read-only commands for GitHub-only users: `command: releases` and `command: backups` run the
 * bundled dist/index.js as the runner does, against a real sshd, and give a job summary table and a compact
 * JSON output (`releases`, `backups`) that a rollback workflow can pick a release or a backup from.
 * These tests use dist/: run `npm run bundle` after changing src/.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { fastShell, startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { expectExit, resultOf, spawnAction } from './harness/cliproc.js'
import { actionStep, currentOf, project, stopApp, type Project } from './support.js'

let host: SshHost
let p: Project
let root: string
const releases: string[] = []
const repo = fileURLToPath(new URL('../..', import.meta.url))

beforeAll(async () => {
  if (!existsSync(join(repo, 'dist', 'index.js')))
    throw new Error('dist/index.js is missing: run `npm run bundle` first')
  host = await startSshd({ extraConfig: fastShell() })
  root = host.root('action-commands')
  p = await project({
    hosts: [host],
    root,
    config: c => ({ ...c, backup: { databases: [{ engine: 'sqlite', path: 'shared/data/app.sqlite3' }] } })
  })
  host.run(`mkdir -p '${join(root, 'shared', 'data')}'`)
  execFileSync('sqlite3', [join(root, 'shared', 'data', 'app.sqlite3')], {
    input: 'CREATE TABLE t (id INTEGER); INSERT INTO t VALUES (1);'
  })
  for (const version of ['1.0.0', '2.0.0']) {
    p.app({ version })
    const r = await p.deploy(['--json'])
    expectExit(r, 0)
    releases.push(resultOf(r).release as string)
  }
}, 120_000)

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
})

describe('command: releases', () => {
  test('the releases output (compact JSON, newest first) and a summary table', async () => {
    const step = actionStep(p, 'releases', { INPUT_COMMAND: 'releases' })
    const r = await spawnAction('index', step.env, p.dir).exited
    expectExit(r, 0)
    const o = step.outputs()
    expect(o.status).toBe('success')
    const text = o.releases as string
    expect(text).not.toContain('\n')
    const list = JSON.parse(text) as Record<string, unknown>[]
    const [v1, v2] = releases as [string, string]
    expect(list.map(l => l.release)).toEqual([v2, v1])
    expect(list[0]).toMatchObject({
      release: v2,
      current: [`${host.address}:${host.port}`],
      state: 'verified'
    })
    expect(list[1]).toMatchObject({ release: v1, current: [], state: 'verified' })
    expect(currentOf(root)).toBe(`releases/${v2}`)
    const summary = step.summary()
    expect(summary).toContain('safe-deploy releases')
    expect(summary).toContain(`<td>${v2}</td>`)
    expect(summary).toContain(`<td>${v1}</td>`)
    expect(summary).toContain('<th>current on</th>')
    // read-only: nothing written to the hosts' history
    expect(r.stdout).toContain(v1)
  })

  test('the rollback workflow example lists releases in a first job and rolls back to the picked one', () => {
    const wf = parse(readFileSync(join(repo, 'examples', 'workflows', 'rollback.yml'), 'utf8')) as {
      jobs: Record<string, { steps: { with?: Record<string, string> }[] }>
    }
    const withs = Object.values(wf.jobs).flatMap(j => j.steps.map(s => s.with ?? {}))
    expect(withs.some(w => w.command === 'releases')).toBe(true)
    expect(withs.some(w => w.command === 'rollback')).toBe(true)
  })
})

describe('command: backups', () => {
  test('the backups output (compact JSON) and a summary table of the primary backups', async () => {
    const step = actionStep(p, 'backups', { INPUT_COMMAND: 'backups' })
    const r = await spawnAction('index', step.env, p.dir).exited
    expectExit(r, 0)
    const o = step.outputs()
    const text = o.backups as string
    expect(text).not.toContain('\n')
    const list = JSON.parse(text) as Record<string, unknown>[]
    // one backup before each deploy
    expect(list).toHaveLength(2)
    for (const b of list) {
      expect(b.name).toMatch(/^ledger_\d{8}_\d{6}/)
      expect(b).toMatchObject({ complete: true, encrypted: false })
      expect(existsSync(join(root, 'backups', `${b.name as string}.sha256`))).toBe(true)
    }
    const summary = step.summary()
    expect(summary).toContain('safe-deploy backups on')
    for (const b of list) expect(summary).toContain(`<td>${b.name as string}</td>`)
    expect(summary).toContain('<th>verified</th>')
  })
})

describe('command: status', () => {
  test('the lines the CLI prints, a summary table, and outputs status, release and status-json', async () => {
    const step = actionStep(p, 'status', { INPUT_COMMAND: 'status' })
    const r = await spawnAction('index', step.env, p.dir).exited
    expectExit(r, 0)
    const o = step.outputs()
    expect(o.status).toBe('success')
    expect(o.release).toBe(releases[1])
    const st = JSON.parse(o['status-json'] as string) as { hosts: { host: string; current: string }[] }
    expect(st.hosts).toEqual([
      expect.objectContaining({ host: `${host.address}:${host.port}`, current: releases[1] })
    ])
    // the log reads like the terminal, not raw JSON
    expect(r.stdout).toMatch(
      new RegExp(`${host.address}:${host.port}: current ${releases[1]}, 2 release\\(s\\)`)
    )
    expect(r.stdout).toContain('lock: free')
    expect(r.stdout).not.toContain('"hosts": [')
    const summary = step.summary()
    expect(summary).toContain('safe-deploy status')
    expect(summary).toContain(`<td>${releases[1]}</td>`)
  })
})
