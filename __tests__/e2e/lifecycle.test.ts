/**
 * One lifecycle for every run that changes a host (src/engine/lifecycle.ts): backup, restore and prune runs
 * end like a deploy, with the JSON report next to the log, the same result (duration, report-file, ...), the
 * same outputs on GitHub (the bundled Action) and in GitLab's dotenv report, the lock released and the run's
 * log on the host. Against a real sshd and a real SQLite database.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { spawnAction } from './harness/cliproc.js'
import { actionStep, currentOf, lockExists, project, stopApp, type CliRun, type Project } from './support.js'
import type { RunResult } from '../../src/pipeline/result.js'

let host: SshHost
let root: string
let p: Project
const repo = fileURLToPath(new URL('../..', import.meta.url))
const sqlite = (sql: string) =>
  execFileSync('sqlite3', [join(root, 'shared', 'data', 'app.sqlite3')], { input: sql, encoding: 'utf8' })

beforeAll(async () => {
  host = await startSshd()
  root = host.root('lifecycle')
  p = await project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      backup: { databases: [{ engine: 'sqlite', path: 'shared/data/app.sqlite3' }] }
    })
  })
  host.run(`mkdir -p '${join(root, 'shared', 'data')}'`)
  sqlite(`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'one');`)
}, 120_000)

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
})

/** The --json result on stdout, and that it is also the report file's content. */
function reported(r: CliRun, command: RunResult['command']): RunResult {
  const out = JSON.parse(r.stdout) as RunResult
  expect(out).toMatchObject({ command, exitCode: r.code })
  expect(typeof out.durationS).toBe('number')
  expect(out.started).toMatch(/^\d{4}-\d\d-\d\dT/)
  expect(out.logFile).toMatch(new RegExp(`${command}_\\d{8}_\\d{6}\\.log$`))
  expect(out.reportFile).toBe((out.logFile as string).replace(/\.log$/, '.json'))
  expect(JSON.parse(readFileSync(out.reportFile as string, 'utf8'))).toEqual(out)
  expect(readFileSync(out.logFile as string, 'utf8')).toContain(out.verdict)
  // the host's deploy.log has this run, and the lock is gone
  expect(readFileSync(join(root, '.safe-deploy', 'deploy.log'), 'utf8')).toContain(out.verdict)
  expect(lockExists(root)).toBe(false)
  return out
}

describe('backup, restore and prune end like a deploy', () => {
  let taken: string

  test('backup: the JSON report, duration, the stages, the verdict; --dotenv has the outputs', async () => {
    const dotenv = join(tempDir('sd-dotenv-'), 'safe-deploy.env')
    const r = await p.run(['backup', '--json', '--dotenv', dotenv])
    expect(r.code).toBe(0)
    const out = reported(r, 'backup')
    expect(out.status).toBe('success')
    expect(out.stages.map(s => [s.name, s.status])).toEqual([
      ['preflight', 'ok'],
      ['backup', 'ok']
    ])
    expect(out.verdict).toMatch(/^BACKUP SUCCESS \(\d+\.\d s\)$/)
    taken = out.backupName as string
    expect(existsSync(join(root, 'backups', `${taken}.sha256`))).toBe(true)
    const env = readFileSync(dotenv, 'utf8')
    expect(env).toContain(`SAFE_DEPLOY_STATUS=success\n`)
    expect(env).toContain(`SAFE_DEPLOY_BACKUP_NAME=${taken}\n`)
    expect(env).toContain(`SAFE_DEPLOY_REPORT_FILE=${out.reportFile as string}\n`)
    expect(env).toMatch(/SAFE_DEPLOY_DURATION=\d+(\.\d)?\n/)
  })

  test('restore: the report says what was put back and the safety backup', async () => {
    sqlite(`INSERT INTO items VALUES (2, 'two');`)
    const r = await p.run(['restore', taken, '--yes', '--json'])
    expect(r.code).toBe(0)
    const out = reported(r, 'restore')
    expect(out.restored?.length).toBeGreaterThan(0)
    for (const f of out.restored ?? []) expect(f.startsWith(`${taken}.`)).toBe(true)
    expect(out.safetyBackup).toMatch(/^ledger_\d{8}_\d{6}/)
    expect(out.verdict).toMatch(/^RESTORE SUCCESS/)
    expect(sqlite('SELECT id FROM items ORDER BY id;')).toBe('1\n')
  })

  test('a failed restore: exit 3, the report and the verdict say where', async () => {
    const r = await p.run(['restore', 'ledger_20200101_000000', '--yes', '--json'])
    expect(r.code).toBe(3)
    const out = reported(r, 'restore')
    expect(out.status).toBe('failed')
    expect(out.error?.stage).toBe('check')
    expect(out.verdict).toMatch(
      /^RESTORE FAILED at check on \S+: .*\. Nothing live was changed \(\d+\.\d s\)$/
    )
  })

  test('backups prune --yes: the report has what was kept and deleted', async () => {
    const r = await p.run(['backups', 'prune', '--yes', '--json'])
    expect(r.code).toBe(0)
    const out = reported(r, 'prune')
    expect(out.keep?.length).toBeGreaterThan(0)
    for (const k of out.keep ?? []) expect(existsSync(join(root, 'backups', `${k}.sha256`))).toBe(true)
    for (const d of out.prune ?? []) expect(existsSync(join(root, 'backups', `${d}.sha256`))).toBe(false)
    expect(out.verdict).toMatch(/^PRUNE SUCCESS/)
  })

  test('the Action (dist/index.js) with command backup sets the same outputs as a deploy, and a job summary', async () => {
    if (!existsSync(join(repo, 'dist', 'index.js')))
      throw new Error('dist/index.js is missing: run `npm run bundle` first')
    const main = actionStep(p, 'backup', { INPUT_COMMAND: 'backup' })
    const r = await spawnAction('index', main.env, p.dir).exited
    expect(r.code).toBe(0)
    const o = main.outputs()
    expect(o).toMatchObject({ status: 'success', 'exit-code': '0', 'rolled-back': 'false' })
    expect(o['backup-name']).toMatch(/^ledger_\d{8}_\d{6}/)
    expect(o.duration).toMatch(/^\d+(\.\d)?$/)
    const report = JSON.parse(readFileSync(o['report-file'] as string, 'utf8')) as RunResult
    expect(report).toMatchObject({ command: 'backup', status: 'success', backupName: o['backup-name'] })
    expect(o['log-file']).toBe((o['report-file'] as string).replace(/\.json$/, '.log'))
    expect(main.summary()).toContain('safe-deploy backup: success')
    expect(r.stdout).toMatch(/BACKUP SUCCESS/)
  })
})

describe('a subscriber that fails never fails the run', () => {
  test('deploy --dotenv into a path that cannot be written: exit 0, live, one warning; the report is written', async () => {
    const blocker = join(tempDir('sd-blocked-'), 'not-a-dir')
    writeFileSync(blocker, '')
    p.app({ version: '1.0.0' })
    const r = await p.deploy(['--json', '--dotenv', join(blocker, 'safe-deploy.env')])
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as RunResult
    expect(out.status).toBe('success')
    expect(currentOf(root)).toBe(`releases/${out.release as string}`)
    expect(r.stderr).toMatch(
      /warning: \[finish\] the dotenv file failed on run-finished \(.*\); the run goes on/
    )
    expect(JSON.parse(readFileSync(out.reportFile as string, 'utf8'))).toMatchObject({ status: 'success' })
    expect(lockExists(root)).toBe(false)
  })
})
