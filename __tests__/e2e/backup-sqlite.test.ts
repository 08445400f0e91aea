/**
 * A bot with a SQLite database and an uploads dir, deployed over SSH: the backup is a checked copy made
 * by SQLite's backup API while the database is in use, restored the same way; a corrupt database is never
 * published as a backup. Deploys without a backup section say so in one line; `backup: false` opts out.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { createHash, randomBytes } from 'node:crypto'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { fakeDocker } from './harness/fakedocker.js'
import { currentOf, lastLog, project, releasesOf, stopApp, type Project } from './support.js'

let host: SshHost
let root: string
let p: Project
let dbFile: string
let taken: string

const sqlite = (sql: string, file = dbFile) =>
  execFileSync('sqlite3', [file], { input: sql, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
const hash = (table: string, file = dbFile) =>
  createHash('sha256')
    .update(sqlite(`SELECT id, hex(name), hex(note), hex(data) FROM ${table} ORDER BY id;`, file))
    .digest('hex')
const backupFiles = () => (existsSync(join(root, 'backups')) ? readdirSync(join(root, 'backups')).sort() : [])

beforeAll(async () => {
  host = await startSshd()
  root = host.root('bot')
  p = await project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      app: 'bot',
      backup: {
        databases: [{ engine: 'sqlite', path: 'shared/data/bot.sqlite3' }],
        files: ['shared/.env', 'shared/logs']
      }
    })
  })
  dbFile = join(root, 'shared', 'data', 'bot.sqlite3')
  host.run(`mkdir -p '${join(root, 'shared', 'data')}' '${join(root, 'shared', 'logs')}'`)
  writeFileSync(join(root, 'shared', 'logs', 'bot.log'), 'started\n')
  writeFileSync(join(root, 'blob.bin'), randomBytes(1 << 20))
  sqlite(
    `PRAGMA journal_mode = WAL;
     CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, note TEXT, data BLOB);
     INSERT INTO items VALUES (1, 'é ünïcödé 日本語 🚀', NULL, NULL), (2, 'quote '' "double" \\ back\\slash', 'line one' || char(10) || 'two', x'00ff00');
     INSERT INTO items VALUES (3, '', NULL, readfile('${join(root, 'blob.bin')}'));
     CREATE TABLE chats (id INTEGER PRIMARY KEY, name TEXT, note TEXT, data BLOB);
     INSERT INTO chats VALUES (1, 'general', NULL, NULL);`
  )
}, 120_000)

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
})

describe('backups of a SQLite app', () => {
  test('deploy with no backup section: one line says no backup is taken', async () => {
    const none = await project({ hosts: [host], root: host.root('plain') })
    none.app({ version: '1.0.0' })
    const r = await none.deploy(['--json'])
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { stages: { name: string }[]; backupName?: string }
    expect(out.stages.map(s => s.name)).not.toContain('backup')
    expect(out.backupName).toBeUndefined()
    expect(lastLog(none.logDir)).toContain(
      '[start] no backup: section in the config, so this deploy takes no backup (configure one, see docs/backups.md, or set backup: false)'
    )
    const off = await project({
      hosts: [host],
      root: host.root('plain'),
      config: c => ({ ...c, backup: false })
    })
    off.app({ version: '1.0.1' })
    expect((await off.deploy()).code).toBe(0)
    expect(lastLog(off.logDir)).toContain('[start] backup: false: this deploy takes no backup')
    await stopApp(join(host.root('plain'), 'shared', 'app.pid'))
    process.chdir(p.dir)
  })

  test('round trip while the database is in use: restored rows equal the seed; later tables are gone', async () => {
    p.app({ version: '1.0.0' })
    const d = await p.deploy(['--json'])
    expect(d.code).toBe(0)
    const seeded = { items: hash('items'), chats: hash('chats') }
    // a writer keeps the database busy during the backup
    const writer = spawn(
      'sh',
      [
        '-c',
        `for i in $(seq 1 300); do sqlite3 '${dbFile}' "PRAGMA busy_timeout=5000; INSERT INTO chats (name) VALUES ('w$i')"; done`
      ],
      {
        stdio: 'ignore'
      }
    )
    const written = new Promise(r => writer.on('exit', r))
    const b = await p.run(['backup', '--json'])
    await written
    expect(b.code).toBe(0)
    const name = (JSON.parse(b.stdout) as { backupName: string }).backupName
    taken = name
    expect(backupFiles()).toEqual(expect.arrayContaining([`${name}.sqlite3.gz`, `${name}.files.tar.gz`]))
    const atBackup = sqlite('SELECT count(*) FROM chats;').trim()
    sqlite(
      `DELETE FROM items WHERE id > 1; UPDATE items SET name = 'x'; DROP TABLE chats; CREATE TABLE migration_added (id INTEGER);`
    )
    writeFileSync(join(root, 'shared', 'logs', 'bot.log'), 'overwritten\n')
    const r = await p.run(['restore', name, '--yes', '--json'])
    expect(r.code).toBe(0)
    expect(hash('items')).toBe(seeded.items)
    expect(Number(sqlite('SELECT count(*) FROM chats;').trim())).toBeGreaterThanOrEqual(1)
    expect(Number(sqlite('SELECT count(*) FROM chats;').trim())).toBeLessThanOrEqual(Number(atBackup))
    expect(sqlite('PRAGMA integrity_check;').trim()).toBe('ok')
    // unlike PostgreSQL and MySQL, the whole file comes back: the table added after the backup is gone
    expect(sqlite("SELECT count(*) FROM sqlite_master WHERE name = 'migration_added';").trim()).toBe('0')
    expect(readFileSync(join(root, 'shared', 'logs', 'bot.log'), 'utf8')).toBe('started\n')
  })

  test('by hand, without safe-deploy: sha256sum -c, gunzip, sqlite3 (docs/backups.md)', () => {
    const name = taken
    const dir = join(root, 'backups')
    execFileSync('sha256sum', ['-c', `${name}.sha256`], { cwd: dir })
    const copy = join(tempDir('sd-by-hand-'), 'restored.sqlite3')
    execFileSync('sh', ['-c', `gunzip -c '${join(dir, `${name}.sqlite3.gz`)}' > '${copy}'`])
    expect(sqlite('PRAGMA integrity_check;', copy).trim()).toBe('ok')
    expect(hash('items', copy)).toBe(hash('items'))
  })

  test('a corrupt database is never published as a backup; the deploy does not start', async () => {
    const broken = join(root, 'shared', 'data', 'broken.sqlite3')
    sqlite(
      'CREATE TABLE t (x TEXT); INSERT INTO t SELECT hex(randomblob(500)) FROM generate_series(1, 2000);',
      broken
    )
    // damage a page in the middle of the file
    const buf = readFileSync(broken)
    buf.fill(0xaa, 40960, 40960 + 4096)
    writeFileSync(broken, buf)
    const files = backupFiles()
    const current = currentOf(root)
    const releases = releasesOf(root)
    const c = await project({
      hosts: [host],
      root,
      config: base => ({
        ...base,
        app: 'bot',
        backup: { databases: [{ engine: 'sqlite', path: 'shared/data/broken.sqlite3' }] }
      })
    })
    c.app({ version: '2.0.0' })
    const r = await c.deploy(['--json'])
    expect(r.code).toBe(3)
    const out = JSON.parse(r.stdout) as { error: { stage: string; message: string } }
    expect(out.error.stage).toBe('backup')
    expect(out.error.message).toMatch(
      /nothing was published: sqlite3 \.backup of the SQLite database "broken" exited 1: .*(integrity_check|malformed)/s
    )
    expect(backupFiles()).toEqual(files)
    expect(currentOf(root)).toBe(current)
    expect(releasesOf(root)).toEqual(releases)
    process.chdir(p.dir)
  })

  test('in a compose service: the same backup and restore through `docker compose exec -T app sh -c ...`', async () => {
    const docker = fakeDocker(tempDir('sd-docker-'))
    const c = await project({
      hosts: [host],
      root,
      config: base => ({
        ...base,
        app: 'bot',
        env: { ...(base.env as object), PATH: `${docker.bin}:/usr/local/bin:/usr/bin:/bin` },
        backup: { databases: [{ engine: 'sqlite', path: dbFile, container: 'app' }] }
      })
    })
    const before = hash('items')
    const b = await c.run(['backup', '--json'])
    expect(b.code).toBe(0)
    const name = (JSON.parse(b.stdout) as { backupName: string }).backupName
    sqlite('DELETE FROM items;')
    const r = await c.run(['restore', name, '--yes'])
    expect(r.code).toBe(0)
    expect(hash('items')).toBe(before)
    const argv = docker.calls().map(x => x.argv)
    expect(argv).toContain('compose exec -T app sqlite3 --version')
    const shells = argv.filter(a => a.startsWith('compose exec -T app sh -c '))
    expect(shells.filter(a => a.endsWith(` sh ${dbFile}`)).length).toBeGreaterThanOrEqual(3)
    expect(argv.some(a => a.includes('.backup copy.sqlite3'))).toBe(true)
    expect(argv.some(a => a.includes('.restore restore.sqlite3'))).toBe(true)
    expect(new Set(docker.calls().map(x => x.cwd))).toEqual(new Set([join(root, 'current')]))
    process.chdir(p.dir)
  })
})
