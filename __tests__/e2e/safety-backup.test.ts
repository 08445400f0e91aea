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

  test('backup --keep protects a backup from retention; unprotect gives it back; protect marks an existing one', async () => {
    const keepRoot = host.root('keep')
    const dir = join(keepRoot, 'backups')
    const k = await project({
      hosts: [host],
      root: keepRoot,
      config: c => ({
        ...c,
        backup: {
          databases: [{ engine: 'postgres', url: 'env:DATABASE_URL' }],
          // one backup a day: the next backup today prunes the one before it
          retention: { daily: 1, weekly: 0, monthly: 0 }
        }
      }),
      envExtra: { DATABASE_URL: url }
    })
    const take = async (...extra: string[]) => {
      const r = await k.run(['backup', '--json', ...extra])
      expect(r.stderr).toContain('BACKUP SUCCESS')
      expect(r.code).toBe(0)
      return (JSON.parse(r.stdout) as { backupName: string }).backupName
    }
    const has = (name: string) => backupFiles(dir).includes(`${name}.sha256`)

    const kept = await take('--keep')
    expect(backupFiles(dir)).toEqual([`${kept}.dump`, `${kept}.keep`, `${kept}.meta.json`, `${kept}.sha256`])
    const b = await take()
    expect(has(kept)).toBe(true)
    const c = await take('--protect') // the alias
    const d = await take()
    // b was pruned by retention; the kept ones survive every backup after them
    expect(has(b)).toBe(false)
    expect(backupFiles(dir).filter(f => f.startsWith(b))).toEqual([])
    expect([has(kept), has(c), has(d)]).toEqual([true, true, true])

    const list = await k.run(['backups', 'list'])
    expect(list.code).toBe(0)
    expect(list.stdout.split('\n').find(l => l.startsWith(kept))).toMatch(/\smanual; protected \(--keep\)$/)
    expect(list.stdout.split('\n').find(l => l.startsWith(d))).toMatch(/\smanual$/)
    const json = JSON.parse((await k.run(['backups', 'list', '--json'])).stdout) as {
      backups: { name: string; protected: boolean }[]
    }
    expect(json.backups.map(x => [x.name, x.protected])).toEqual([
      [kept, true],
      [c, true],
      [d, false]
    ])
    const dry = await k.run(['backups', 'prune'])
    expect(dry.stdout).toContain(`keep    ${kept}  (protected)`)

    // a download copies the backup, not the host's marker
    const out = tempDir('sd-keep-dl-')
    expect((await k.run(['backups', 'download', kept, '--out', out])).code).toBe(0)
    expect(readdirSync(out).sort()).toEqual([`${kept}.dump`, `${kept}.meta.json`, `${kept}.sha256`])

    const un = await k.run(['backups', 'unprotect', kept])
    expect(un.code).toBe(0)
    expect(un.stdout).toContain(`${kept}: no longer protected`)
    expect(backupFiles(dir)).not.toContain(`${kept}.keep`)
    const e = await take()
    expect(has(kept)).toBe(false)
    expect(has(d)).toBe(false)
    expect([has(c), has(e)]).toEqual([true, true])

    // protect an existing backup; a name that does not exist is an error
    const pr = await k.run(['backups', 'protect', e])
    expect(pr.code).toBe(0)
    expect(backupFiles(dir)).toContain(`${e}.keep`)
    await take()
    expect(has(e)).toBe(true)
    const missing = await k.run(['backups', 'protect', 'ledger_20200101_000000'])
    expect(missing.code).toBe(3)
    expect(missing.stderr).toContain('backup ledger_20200101_000000 does not exist')
    // --keep is for `backup` only: refused before connecting
    const wrong = await k.run(['deploy', '--keep'])
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toContain('--keep (--protect) is for `backup`')
    process.chdir(p.dir)
  })
})
