/**
 * A team with a PostgreSQL app deploys schema migrations. A migration that fails half way, and a migration
 * that works under code that does not, both leave them on the previous release with the database as it
 * was before the deploy (by checksum). The down command and the backup restore are both exercised, and a
 * manual rollback never restores a backup unless told which.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { startPostgres, type PgServer } from './harness/db.js'
import {
  answer,
  currentOf,
  historyOf,
  lastLog,
  lockExists,
  migrationProject,
  releasesOf,
  stopApp,
  withMigrations,
  type Migration
} from './support.js'

const PASSWORD = `shop-pw-${Date.now()}`
let host: SshHost
let pg: PgServer
let url: string
const roots: string[] = []

const M1: Migration = {
  n: '001',
  up: 'CREATE TABLE notes (id int PRIMARY KEY, body text);\n',
  down: 'DROP TABLE notes;\n'
}
// statement 3 fails: 1 and 2 are committed already (psql -f without a transaction), as in MySQL DDL
const M2_HALF: Migration = {
  n: '002',
  up: "ALTER TABLE items ADD COLUMN price int;\nUPDATE items SET name = name || ' (migrated)';\nSELECT 1 / 0;\nUPDATE items SET price = 1;\n",
  down: 'ALTER TABLE items DROP COLUMN IF EXISTS price;\n'
}
const M2_OK: Migration = {
  n: '002',
  up: "CREATE TABLE tags (id int);\nALTER TABLE items ADD COLUMN price int;\nUPDATE items SET price = 7, name = name || '!';\n",
  down: "ALTER TABLE items DROP COLUMN price;\nUPDATE items SET name = rtrim(name, '!');\nDROP TABLE tags;\n"
}

const columns = () =>
  pg
    .psql(
      "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'items'",
      'shop'
    )
    .trim()
const tables = () =>
  pg
    .psql(
      "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
      'shop'
    )
    .trim()
const version = () => pg.psql('SELECT coalesce(max(v), 0) FROM schema_version', 'shop').trim()

async function shop(name: string, migrate: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const root = host.root(name)
  roots.push(root)
  return { p: await migrationProject({ host, root, url, migrate, extra }), root }
}

beforeAll(async () => {
  host = await startSshd()
  pg = await startPostgres()
  pg.createDatabase('shop', 'shop_app', PASSWORD)
  url = `postgres://shop_app:${PASSWORD}@127.0.0.1:${pg.port}/shop`
}, 120_000)

afterAll(async () => {
  for (const r of roots) await stopApp(join(r, 'shared', 'app.pid'))
  await stopAll()
  await pg?.stop()
})

function reset() {
  pg.psql(
    `DROP TABLE IF EXISTS items, notes, tags, schema_version;
     CREATE TABLE items (id int PRIMARY KEY, name text, data bytea);
     INSERT INTO items VALUES (1, 'tea ☕', NULL), (2, 'bread', decode('00ff10', 'hex')), (3, NULL, NULL);
     ALTER TABLE items OWNER TO shop_app;`,
    'shop'
  )
}

describe('migrations over SSH against a real PostgreSQL', () => {
  test('a migration that fails half way: database restored to the pre-deploy checksum, old release serving, exit 3', async () => {
    reset()
    const { p, root } = await shop('half', { command: 'bin/migrate up', revision: 'bin/migrate current' })
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    const first = await p.deploy(['--json'])
    expect(first.code).toBe(0)
    const v1 = (JSON.parse(first.stdout) as { release: string }).release
    expect(historyOf(root).at(-1)).toMatchObject({ release: v1, migrated: true, revision: '0' })
    expect(version()).toBe('1')
    const before = { hash: pg.tableHash('shop', 'items'), columns: columns(), tables: tables() }

    p.app({ version: '2.0.0' })
    withMigrations(p, [M1, M2_HALF])
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(3)
    const result = JSON.parse(r.stdout) as {
      error: { stage: string; host: string; message: string }
      release: string
    }
    expect(result.error.stage).toBe('migrate')
    expect(result.error.host).toBe(`${host.address}:2222`)
    expect(result.error.message).toContain('migrate failed on')
    expect(result.error.message).toContain('division by zero')
    // the half-applied statements are gone: same rows, same columns, same tables
    expect(pg.tableHash('shop', 'items')).toBe(before.hash)
    expect(columns()).toBe(before.columns)
    expect(tables()).toBe(before.tables)
    expect(currentOf(root)).toBe(`releases/${v1}`)
    expect(existsSync(join(root, 'releases', result.release))).toBe(false)
    expect(await answer(p.port)).toBe('version 1.0.0')
    expect(lockExists(root)).toBe(false)
    const log = lastLog(p.logDir)
    expect(log).toMatch(/\[migrate\] \[\S+\] psql:migrations\/002\.up\.sql:3: ERROR: {2}division by zero/)
    expect(log).toMatch(/restoring the pre-deploy backup ledger_\d{8}_\d{6}/)
    expect(log).toMatch(/DEPLOYMENT FAILED at migrate on \S+: .* Nothing live was changed/)
    expect(historyOf(root).at(-1)).toMatchObject({
      release: result.release,
      status: 'failed',
      database: 'restored'
    })
  })

  test('a migration that works under code that does not: code and database back (restore), exit 4', async () => {
    reset()
    const { p, root } = await shop('broken-code', {
      command: 'bin/migrate up',
      revision: 'bin/migrate current'
    })
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(0)
    const v1 = currentOf(root)
    pg.psql("INSERT INTO items VALUES (4, 'written while v1 served', NULL)", 'shop')
    const before = { hash: pg.tableHash('shop', 'items'), columns: columns() }

    p.app({ version: '2.0.0', healthy: false })
    withMigrations(p, [M1, M2_OK])
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(4)
    expect(pg.tableHash('shop', 'items')).toBe(before.hash)
    expect(columns()).toBe(before.columns)
    expect(currentOf(root)).toBe(v1)
    expect(await answer(p.port)).toBe('version 1.0.0')
    const log = lastLog(p.logDir)
    // the database went back before the code switched back
    expect(log.indexOf('database restored from')).toBeGreaterThan(-1)
    expect(log.indexOf('database restored from')).toBeLessThan(log.indexOf('(restored)'))
    expect(historyOf(root).at(-1)).toMatchObject({
      status: 'rolled-back',
      bad: true,
      migrated: true,
      database: 'restored'
    })
    expect(lockExists(root)).toBe(false)
  })

  test('the same with a down command: the migration is reverted, rows written meanwhile are kept', async () => {
    reset()
    const { p, root } = await shop('down', {
      command: 'bin/migrate up',
      revision: 'bin/migrate current',
      down: 'bin/migrate down {revision}'
    })
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(0)
    const v1 = currentOf(root)
    const before = { hash: pg.tableHash('shop', 'items'), columns: columns(), tables: tables() }

    p.app({ version: '2.0.0', healthy: false })
    withMigrations(p, [M1, M2_OK])
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(4)
    expect(columns()).toBe(before.columns)
    expect(tables()).toBe(before.tables)
    expect(pg.tableHash('shop', 'items')).toBe(before.hash)
    expect(version()).toBe('1')
    expect(currentOf(root)).toBe(v1)
    expect(lastLog(p.logDir)).toContain('database migrated down: revision read back 1')
    expect(historyOf(root).at(-1)).toMatchObject({ status: 'rolled-back', database: 'down', revision: '1' })
  })

  test('a manual rollback across a migration: refused without a choice, then --restore or --no-db', async () => {
    reset()
    const { p, root } = await shop('manual', { command: 'bin/migrate up', revision: 'bin/migrate current' })
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(0)
    const v1 = currentOf(root) as string
    const beforeV2 = pg.tableHash('shop', 'items')
    p.app({ version: '2.0.0' })
    withMigrations(p, [M1, M2_OK])
    const d2 = await p.deploy(['--json'])
    expect(d2.code).toBe(0)
    const backup = (JSON.parse(d2.stdout) as { backupName: string }).backupName
    expect(columns()).toBe('id,name,data,price')

    const refused = await p.run(['rollback'])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain(
      `Restoring it loses every write made since; to do that pass --restore ${backup}`
    )
    expect(refused.stderr).toContain('--no-db')
    expect(currentOf(root)).not.toBe(v1)

    const restored = await p.run(['rollback', '--restore', backup, '--json'])
    expect(restored.code).toBe(0)
    expect(currentOf(root)).toBe(v1)
    expect(pg.tableHash('shop', 'items')).toBe(beforeV2)
    expect(columns()).toBe('id,name,data')
    expect(await answer(p.port)).toBe('version 1.0.0')
    expect(historyOf(root).at(-1)).toMatchObject({
      type: 'rollback',
      database: 'restored',
      status: 'success'
    })
    expect(releasesOf(root).length).toBeGreaterThanOrEqual(2)
  })
})
