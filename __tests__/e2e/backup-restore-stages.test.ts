/**
 * Restore-with-safety as stages: a manual `rollback --restore NAME` verifies the backup, takes a safety
 * backup, and restores; when the restore fails half way (a MariaDB restore is not atomic), the rollback's
 * database stage is undone by the orchestrator, which puts the safety backup back. When that fails too,
 * the run says a person must look (exit 5).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { startMariadb, type MariaServer } from './harness/db.js'
import { currentOf, project, stopApp, type Project } from './support.js'

const PASSWORD = `rb pa$$'w"ord ${Date.now()}`
let host: SshHost
let db: MariaServer
let root: string
let p: Project
let url: string
/** Where the flaky client looks for its `fail-*` markers: one restore fails per marker. */
let flakyDir: string
let backup: string
let v2: string

const state = () => db.tableHash('shop', 'items', 'id, HEX(name)')

/** A client that applies the first 20 lines of a dump and loses its connection, once per marker file. */
function flakyClient(dir: string): string {
  return `#!/bin/sh
case " $* " in *" -e "*|*" --version "*) exec /usr/bin/mariadb "$@" ;; esac
for m in '${dir}'/fail-*; do
  if [ -f "$m" ]; then
    rm -f "$m"
    head -n 20 | /usr/bin/mariadb "$@"
    echo "ERROR 2013 (HY000) at line 21: Lost connection to server during query" >&2
    exit 1
  fi
done
exec /usr/bin/mariadb "$@"
`
}

const failNext = (n: number) => {
  for (let i = 1; i <= n; i++) writeFileSync(join(flakyDir, `fail-${i}`), '')
}

function lastLog(prefix: string): string {
  const f = readdirSync(p.logDir)
    .filter(x => x.startsWith(prefix) && x.endsWith('.log'))
    .sort()
    .at(-1) as string
  return readFileSync(join(p.logDir, f), 'utf8')
}

beforeAll(async () => {
  host = await startSshd()
  db = await startMariadb()
  db.createDatabase('shop', 'shop_app', PASSWORD)
  db.sql(
    `CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(200)) ENGINE=InnoDB;
     INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');`,
    'shop'
  )
  url = `mysql://shop_app:${encodeURIComponent(PASSWORD)}@127.0.0.1:${db.port}/shop`
  root = host.root('shop')
  flakyDir = tempDir('sd-flaky-rb-')
  writeFileSync(join(flakyDir, 'mariadb'), flakyClient(flakyDir), { mode: 0o755 })
  p = await project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      app: 'shop',
      env: { ...(c.env as object), PATH: `${flakyDir}:/usr/bin:/bin` },
      backup: { databases: [{ engine: 'mysql', url: 'env:MYSQL_URL' }] }
    }),
    envExtra: { MYSQL_URL: url }
  })
  p.app({ version: '1.0.0' })
  expect((await p.deploy()).code).toBe(0)
  p.app({ version: '2.0.0' })
  const d2 = await p.deploy(['--json'])
  expect(d2.code).toBe(0)
  backup = (JSON.parse(d2.stdout) as { backupName: string }).backupName
  v2 = currentOf(root) as string
  // writes made since the pre-deploy backup: what a restore would lose, and what the safety backup holds
  db.sql(
    "UPDATE items SET name = 'changed since the backup' WHERE id = 1; DELETE FROM items WHERE id = 2;",
    'shop'
  )
}, 240_000)

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
  await db?.stop()
})

describe('rollback --restore: safety backup and restore as stages', () => {
  test('a restore that fails half way is undone from the safety backup by the orchestrator (exit 3)', async () => {
    const before = state()
    failNext(1)
    const r = await p.run(['rollback', '--restore', backup, '--json'])
    expect(r.code).toBe(3)
    expect(existsSync(join(flakyDir, 'fail-1'))).toBe(false)
    const out = JSON.parse(r.stdout) as {
      error: { stage: string; message: string }
      stages: { name: string; status: string }[]
    }
    expect(out.error.stage).toBe('database')
    expect(out.error.message).toContain('Lost connection to server during query')
    expect(out.stages).toContainEqual(expect.objectContaining({ name: 'undo database', status: 'undone' }))
    // the data is as it was when the rollback started; the code did not switch
    expect(state()).toBe(before)
    expect(currentOf(root)).toBe(v2)
    const log = lastLog('rollback_')
    expect(log).toMatch(/safety backup shop_\d{8}_\d{6} taken before restore of /)
    expect(log).toMatch(/database restored from the safety backup shop_\d{8}_\d{6}/)
  })

  test('when putting the safety backup back fails too, a person must look (exit 5)', async () => {
    failNext(2)
    const r = await p.run(['rollback', '--restore', backup, '--json'])
    expect(r.code).toBe(5)
    const out = JSON.parse(r.stdout) as { stages: { name: string; status: string }[] }
    expect(out.stages).toContainEqual(
      expect.objectContaining({ name: 'undo database', status: 'undo-failed' })
    )
    expect(currentOf(root)).toBe(v2)
  })
})
