/**
 * A Laravel-style app on MariaDB backs up its database (zstd) and its uploads before each deploy and on
 * demand; it restores both, routines, triggers and events included. The same database is then reached
 * "inside a compose service" through the exact `docker compose exec -T` commands safe-deploy generates
 * (a fake docker on the host's PATH records them and runs the real tools: no Docker engine runs here).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { startMariadb, watchArgv, type MariaServer } from './harness/db.js'
import { fakeDocker, pathWithout } from './harness/fakedocker.js'
import { currentOf, historyOf, project, releasesOf, stopApp, type Project } from './support.js'

const PASSWORD = `my pa$$'w"ord\\#${Date.now()}`
let host: SshHost
let db: MariaServer
let root: string
let p: Project
let url: string
const COLUMNS = 'id, HEX(name), HEX(note), HEX(data)'

/** Routines, triggers and events belong to the app's user, as when its migrations create them. */
function seed() {
  const blob = randomBytes(1 << 20).toString('hex')
  db.sql(
    `CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(200) CHARACTER SET utf8mb4, note TEXT NULL, data LONGBLOB NULL) ENGINE=InnoDB;
     INSERT INTO items VALUES
       (1, 'é ünïcödé 日本語 🚀', NULL, NULL),
       (2, 'quote '' "double" \\\\ back\\\\slash', 'line one\\nline two\\ttab', X'00ff00'),
       (3, '', NULL, X'${blob}');
     CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, item INT, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
     CREATE DEFINER = 'shop_app'@'127.0.0.1' TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW INSERT INTO audit (item) VALUES (NEW.id);
     CREATE DEFINER = 'shop_app'@'127.0.0.1' PROCEDURE item_count() SELECT COUNT(*) FROM items;
     CREATE DEFINER = 'shop_app'@'127.0.0.1' EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit WHERE at < NOW() - INTERVAL 30 DAY;`,
    'shop'
  )
}
const state = () => db.tableHash('shop', 'items', COLUMNS)
const objects = () =>
  db.sql(
    "SELECT CONCAT(type, ' ', name) FROM (SELECT 'TRIGGER' type, trigger_name name FROM information_schema.triggers WHERE trigger_schema = 'shop' UNION SELECT routine_type, routine_name FROM information_schema.routines WHERE routine_schema = 'shop' UNION SELECT 'EVENT', event_name FROM information_schema.events WHERE event_schema = 'shop') o ORDER BY 1"
  )

beforeAll(async () => {
  host = await startSshd()
  db = await startMariadb()
  db.createDatabase('shop', 'shop_app', PASSWORD)
  seed()
  url = `mysql://shop_app:${encodeURIComponent(PASSWORD)}@127.0.0.1:${db.port}/shop`
  root = host.root('shop')
  p = await project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      app: 'shop',
      backup: {
        databases: [{ engine: 'mysql', url: 'env:MYSQL_URL', compress: 'zstd' }],
        files: ['shared/.env', 'shared/data']
      }
    }),
    envExtra: { MYSQL_URL: url }
  })
  host.run(`mkdir -p '${root}/shared/data' && printf 'upload one' > '${root}/shared/data/one.txt'`)
}, 120_000)

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
  await db?.stop()
})

const backupFiles = () => (existsSync(join(root, 'backups')) ? readdirSync(join(root, 'backups')).sort() : [])

describe('backups of a MariaDB app', () => {
  test('deploy backs up the database (zstd) and the files first', async () => {
    p.app({ version: '1.0.0' })
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { backupName: string; backupPath: string }
    expect(out.backupPath).toBe(`${root}/backups/${out.backupName}.sql.zst`)
    expect(backupFiles()).toEqual([
      `${out.backupName}.files.tar.gz`,
      `${out.backupName}.meta.json`,
      `${out.backupName}.sha256`,
      `${out.backupName}.sql.zst`
    ])
    expect(historyOf(root).at(-1)).toMatchObject({ backup: out.backupName, status: 'success' })
  })

  test('round trip: rows, routines, triggers, events and uploads come back; a later table stays', async () => {
    const seeded = state()
    const seededObjects = objects()
    expect(seededObjects.split('\n').filter(Boolean)).toEqual([
      'EVENT nightly',
      'PROCEDURE item_count',
      'TRIGGER items_audit'
    ])
    // mariadb-dump waits for a table lock held elsewhere: meanwhile, nothing secret in any argv
    const locker = spawn(
      'mariadb',
      [
        '--no-defaults',
        '-S',
        db.socket,
        '-uroot',
        'shop',
        '-e',
        'LOCK TABLES items WRITE; DO SLEEP(2); UNLOCK TABLES;'
      ],
      {
        stdio: 'ignore'
      }
    )
    const unlocked = new Promise(r => locker.on('exit', r))
    const watch = watchArgv(5)
    let name: string
    try {
      const b = await p.run(['backup', '--json'])
      expect(b.code).toBe(0)
      name = (JSON.parse(b.stdout) as { backupName: string }).backupName
      await unlocked
    } finally {
      watch.stop()
    }
    const seen = [...watch.seen]
    expect(seen.some(l => l.startsWith('mariadb-dump -h 127.0.0.1'))).toBe(true)
    for (const l of seen) {
      expect(l).not.toContain(PASSWORD)
      expect(l).not.toContain(encodeURIComponent(PASSWORD))
    }
    db.sql(
      `UPDATE items SET name = 'changed' WHERE id = 1; DELETE FROM items WHERE id = 3;
       DROP PROCEDURE item_count; DROP TRIGGER items_audit; DROP EVENT nightly;
       CREATE TABLE migration_added (id INT PRIMARY KEY);`,
      'shop'
    )
    writeFileSync(join(root, 'shared', 'data', 'added-later.txt'), 'x')
    writeFileSync(join(root, 'shared', 'data', 'one.txt'), 'overwritten')
    const r = await p.run(['restore', name, '--yes', '--json'])
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { restored: string[]; leftTables: Record<string, string[]> }
    expect(out.restored).toEqual([`${name}.files.tar.gz`, `${name}.sql.zst`])
    expect(state()).toBe(seeded)
    expect(objects()).toBe(seededObjects)
    expect(out.leftTables).toEqual({ [`${name}.sql.zst`]: ['migration_added'] })
    expect(readdirSync(join(root, 'shared', 'data'))).toEqual(['one.txt'])
    expect(readFileSync(join(root, 'shared', 'data', 'one.txt'), 'utf8')).toBe('upload one')
    db.sql('DROP TABLE migration_added', 'shop')
  })

  test('a restore that fails halfway is undone from the safety backup: exit 4, data as before', async () => {
    const b = await p.run(['backup', '--json'])
    expect(b.code).toBe(0)
    const name = (JSON.parse(b.stdout) as { backupName: string }).backupName
    db.sql(
      "UPDATE items SET name = 'changed since the backup' WHERE id = 1; DELETE FROM items WHERE id = 2;",
      'shop'
    )
    const before = state()
    // a client that applies the first 40 lines of the dump, then loses its connection (once)
    const dir = tempDir('sd-flaky-')
    const marker = join(dir, 'fail-once')
    writeFileSync(marker, '')
    writeFileSync(
      join(dir, 'mariadb'),
      `#!/bin/sh
case " $* " in *" -e "*|*" --version "*) exec /usr/bin/mariadb "$@" ;; esac
if [ -f '${marker}' ]; then
  rm -f '${marker}'
  head -n 40 | /usr/bin/mariadb "$@"
  echo "ERROR 2013 (HY000) at line 41: Lost connection to server during query" >&2
  exit 1
fi
exec /usr/bin/mariadb "$@"
`,
      { mode: 0o755 }
    )
    const flaky = await project({
      hosts: [host],
      root,
      config: c => ({
        ...c,
        app: 'shop',
        env: { ...(c.env as object), PATH: `${dir}:/usr/bin:/bin` },
        backup: { databases: [{ engine: 'mysql', url: 'env:MYSQL_URL', compress: 'zstd' }] }
      }),
      envExtra: { MYSQL_URL: url }
    })
    const r = await flaky.run(['restore', name, '--yes', '--json'])
    expect(r.code).toBe(4)
    const out = JSON.parse(r.stdout) as { status: string; error: { stage: string; message: string } }
    expect(out.status).toBe('rolled-back')
    expect(out.error.stage).toBe('restore')
    expect(out.error.message).toContain('Lost connection to server during query')
    expect(existsSync(marker)).toBe(false)
    expect(state()).toBe(before)
    expect(
      readFileSync(
        join(
          flaky.logDir,
          readdirSync(flaky.logDir).find(f => f.startsWith('restore_') && f.endsWith('.log')) as string
        ),
        'utf8'
      )
    ).toMatch(/the data is as it was before the restore \(safety backup shop_\d{8}_\d{6}\)/)
    process.chdir(p.dir)
  })

  test('a dump that fails publishes nothing, and says why', async () => {
    const files = backupFiles()
    db.sql(
      `REVOKE ALL ON shop.* FROM 'shop_app'@'127.0.0.1'; GRANT SELECT ON shop.* TO 'shop_app'@'127.0.0.1';`
    )
    try {
      // without LOCK TABLES/EVENT privileges, mariadb-dump --events fails midway
      const r = await p.run(['backup', '--json'])
      expect(r.code).toBe(3)
      const out = JSON.parse(r.stdout) as { error: { stage: string; message: string } }
      expect(out.error.message).toMatch(
        /^backup failed on \S+, nothing was published: mariadb-dump of the MySQL database "shop" exited \d+: mariadb-dump: /
      )
      expect(backupFiles()).toEqual(files)
    } finally {
      db.sql(`GRANT ALL ON shop.* TO 'shop_app'@'127.0.0.1';`)
    }
  })

  test('a missing client says what to install', async () => {
    const noClient = await project({
      hosts: [host],
      root,
      config: c => ({
        ...c,
        app: 'shop',
        env: { ...(c.env as object), PATH: pathWithout(tempDir('sd-path-'), ['mariadb-dump', 'mysqldump']) },
        backup: { databases: [{ engine: 'mysql', url: 'env:MYSQL_URL' }] }
      }),
      envExtra: { MYSQL_URL: url }
    })
    const r = await noClient.run(['backup'])
    expect(r.code).toBe(3)
    expect(r.stderr).toContain(
      `mysqldump not found on ${host.address}:2222: install mariadb-client (or mysql-client for a MySQL server)`
    )
    process.chdir(p.dir)
  })
})

describe('in a compose service (container: db), through a fake docker', () => {
  test('backup and restore run as `docker compose exec -T -e MYSQL_PWD db ...` in the compose dir', async () => {
    const docker = fakeDocker(tempDir('sd-docker-'))
    const composeDir = join(root, 'compose')
    host.run(`mkdir -p '${composeDir}'`)
    const c = await project({
      hosts: [host],
      root,
      config: base => ({
        ...base,
        app: 'shop',
        env: { ...(base.env as object), PATH: `${docker.bin}:/usr/local/bin:/usr/bin:/bin` },
        backup: {
          databases: [{ engine: 'mysql', url: 'env:MYSQL_URL', container: 'db', compose_dir: 'compose' }]
        }
      }),
      envExtra: { MYSQL_URL: url }
    })
    const seeded = state()
    const b = await c.run(['backup', '--json'])
    expect(b.code).toBe(0)
    const name = (JSON.parse(b.stdout) as { backupName: string }).backupName
    expect(name).toMatch(/^shop_\d{8}_\d{6}$/)
    db.sql('DELETE FROM items', 'shop')
    const r = await c.run(['restore', name, '--yes'])
    expect(r.code).toBe(0)
    expect(state()).toBe(seeded)
    const calls = docker.calls()
    const conn = `-h 127.0.0.1 -P ${db.port} -u shop_app`
    const argv = calls.map(x => x.argv)
    expect(argv).toContain(
      `compose exec -T -e MYSQL_PWD db mariadb-dump ${conn} --single-transaction --routines --triggers --events --hex-blob --no-tablespaces --default-character-set=utf8mb4 -- shop`
    )
    expect(argv).toContain(`compose exec -T -e MYSQL_PWD db mariadb ${conn} -- shop`)
    expect(argv).toContain('compose exec -T db mariadb-dump --version')
    expect(new Set(calls.map(x => x.cwd))).toEqual(new Set([composeDir]))
    for (const a of argv) expect(a).not.toContain(PASSWORD)
    process.chdir(p.dir)
  })

  test('nothing live changed by those: current and releases are as the deploy left them', () => {
    expect(currentOf(root)).toMatch(/^releases\//)
    expect(releasesOf(root)).toHaveLength(1)
  })
})
