/**
 * Issue 7, items 1, 2 and 6: a rollback never runs a `down` that this run's migration does not need, a
 * manual rollback across a migration keeps a verified safety backup (or asks first), `rollback --dry-run`
 * shows what a rollback would do, and a rollback target that fails its checks puts back what served before.
 * Real sshd, real PostgreSQL, the real app over HTTP.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { startPostgres, type PgServer } from './harness/db.js'
import { writeApp } from './harness/app.js'
import {
  answer,
  currentOf,
  historyOf,
  lastLog,
  lockExists,
  migrationProject,
  stopApp,
  withMigrations,
  type Migration
} from './support.js'

const PASSWORD = `notes-pw-${Date.now()}`
let host: SshHost
let pg: PgServer
let url: string
const roots: string[] = []

const M1: Migration = {
  n: '001',
  up: 'CREATE TABLE notes (id int PRIMARY KEY, body text);\n',
  down: 'DROP TABLE notes;\n'
}
const M2: Migration = {
  n: '002',
  up: 'CREATE TABLE tags (id int PRIMARY KEY, label text);\n',
  down: 'DROP TABLE tags;\n'
}

const tables = () =>
  pg
    .psql(
      "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
      'notes'
    )
    .trim()
const version = () => pg.psql('SELECT coalesce(max(v), 0) FROM schema_version', 'notes').trim()
const rows = (table: string) =>
  pg.psql(`SELECT string_agg(id || ':' || coalesce(body, ''), ',' ORDER BY id) FROM ${table}`, 'notes').trim()

function reset() {
  pg.psql('DROP TABLE IF EXISTS notes, tags, schema_version;', 'notes')
}

async function app(name: string, migrate: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const root = host.root(name)
  roots.push(root)
  const p = await migrationProject({ host, root, url, migrate, extra })
  return { p, root }
}

const backupsOf = (root: string) =>
  existsSync(join(root, 'backups'))
    ? readdirSync(join(root, 'backups'))
        .filter(f => f.endsWith('.meta.json'))
        .map(f => f.replace(/\.meta\.json$/, ''))
    : []

beforeAll(async () => {
  host = await startSshd()
  pg = await startPostgres()
  pg.createDatabase('notes', 'notes_app', PASSWORD)
  url = `postgres://notes_app:${PASSWORD}@127.0.0.1:${pg.port}/notes`
}, 120_000)

afterAll(async () => {
  for (const r of roots) await stopApp(join(r, 'shared', 'app.pid'))
  await stopAll()
  await pg?.stop()
})

describe('a failed deploy runs `down` only when its migration changed the revision', () => {
  test('broken code with no new migration: no down runs, the previous release keeps its table and rows (exit 4)', async () => {
    reset()
    // `bin/migrate rollback` undoes the LAST migration, like `php artisan migrate:rollback`
    const { p, root } = await app('no-new-migration', {
      command: 'bin/migrate up',
      revision: 'bin/migrate current',
      down: 'bin/migrate rollback'
    })
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(0)
    const v1 = currentOf(root)
    pg.psql("INSERT INTO notes VALUES (1, 'written under v1'), (2, 'also')", 'notes')

    p.app({ version: '2.0.0', healthy: false })
    withMigrations(p, [M1])
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(4)
    expect(currentOf(root)).toBe(v1)
    expect(tables()).toBe('notes,schema_version')
    expect(rows('notes')).toBe('1:written under v1,2:also')
    expect(version()).toBe('1')
    const log = lastLog(p.logDir)
    expect(log).toContain('no migration ran; database left as it is')
    expect(log).not.toContain('bin/migrate rollback')
    expect(log).not.toContain('migrated down')
    const result = JSON.parse(r.stdout) as { stages: { name: string }[] }
    expect(result.stages.map(s => s.name)).not.toContain('undo migrate')
    const last = historyOf(root).at(-1) as Record<string, unknown>
    expect(last).toMatchObject({ status: 'rolled-back', revision: '1' })
    expect(last.migrated).toBe(false)
    expect(last.database ?? null).toBeNull()
  })

  test('a migration that fails half way without moving the revision: no down (it would undo 001), the backup is restored (exit 3)', async () => {
    reset()
    const { p, root } = await app('half-no-down', {
      command: 'bin/migrate up',
      revision: 'bin/migrate current',
      down: 'bin/migrate rollback'
    })
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(0)
    pg.psql("INSERT INTO notes VALUES (1, 'written under v1')", 'notes')
    p.app({ version: '2.0.0' })
    // statement 1 commits (psql -f, no transaction), statement 2 fails: schema_version is not bumped
    withMigrations(p, [
      M1,
      { n: '002', up: 'CREATE TABLE tags (id int);\nSELECT 1 / 0;\n', down: 'DROP TABLE tags;\n' }
    ])
    const r = await p.deploy()
    expect(r.code).toBe(3)
    expect(rows('notes')).toBe('1:written under v1')
    expect(version()).toBe('1')
    const log = lastLog(p.logDir)
    expect(log).not.toContain('$ bin/migrate rollback')
    expect(log).toMatch(
      /the migration failed without changing the revision \(1\).*restoring the pre-deploy backup/
    )
    expect(historyOf(root).at(-1)).toMatchObject({ status: 'failed', database: 'restored' })
  })

  test('a down that exits 0 without reverting: the revision read back says so and the backup is restored', async () => {
    reset()
    const { p, root } = await app('down-lies', {
      command: 'bin/migrate up',
      revision: 'bin/migrate current',
      down: 'echo pretending to downgrade to {revision}'
    })
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(0)
    const v1 = currentOf(root)

    p.app({ version: '2.0.0', healthy: false })
    withMigrations(p, [M1, M2])
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(4)
    expect(currentOf(root)).toBe(v1)
    // the restore brings back the pre-deploy rows; a table created since is left (and named in the log)
    expect(version()).toBe('1')
    const log = lastLog(p.logDir)
    expect(log).toContain('has table(s) the backup does not: public.tags')
    expect(log).toContain('database revision after migrating: 2')
    expect(log).toMatch(/left the database at revision 2, not 1/)
    expect(log).not.toContain('database migrated down to 1')
    expect(log).toMatch(/database restored from ledger_\d{8}_\d{6}/)
    expect(historyOf(root).at(-1)).toMatchObject({
      status: 'rolled-back',
      migrated: true,
      database: 'restored'
    })
  })

  test('a down that works: the revision is read back after it and logged as read', async () => {
    reset()
    const { p, root } = await app('down-works', {
      command: 'bin/migrate up',
      revision: 'bin/migrate current',
      down: 'bin/migrate down {revision}'
    })
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(0)
    p.app({ version: '2.0.0', healthy: false })
    withMigrations(p, [M1, M2])
    expect((await p.deploy()).code).toBe(4)
    expect(tables()).toBe('notes,schema_version')
    const log = lastLog(p.logDir)
    expect(log).toContain('database migrated down: revision read back 1')
    expect(historyOf(root).at(-1)).toMatchObject({ database: 'down', migrated: true })
  })

  test('without a revision command, a down is not the default: the pre-deploy backup is restored instead', async () => {
    reset()
    const { p, root } = await app('no-revision', { command: 'bin/migrate up', down: 'bin/migrate rollback' })
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(0)
    pg.psql("INSERT INTO notes VALUES (1, 'kept')", 'notes')
    p.app({ version: '2.0.0', healthy: false })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(4)
    expect(tables()).toBe('notes,schema_version')
    expect(rows('notes')).toBe('1:kept')
    const log = lastLog(p.logDir)
    expect(log).not.toContain('$ bin/migrate rollback')
    expect(historyOf(root).at(-1)).toMatchObject({ database: 'restored' })
  })
})

describe('a manual rollback across a migration', () => {
  async function twoReleases(name: string, extra: Record<string, unknown> = {}) {
    reset()
    const { p, root } = await app(
      name,
      { command: 'bin/migrate up', revision: 'bin/migrate current', down: 'bin/migrate down {revision}' },
      extra
    )
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(0)
    const v1 = (currentOf(root) as string).replace(/^releases\//, '')
    p.app({ version: '2.0.0' })
    withMigrations(p, [M1, M2])
    expect((await p.deploy()).code).toBe(0)
    const v2 = (currentOf(root) as string).replace(/^releases\//, '')
    // users write data the down will drop
    pg.psql("INSERT INTO tags VALUES (1, 'urgent'), (2, 'later')", 'notes')
    return { p, root, v1, v2 }
  }

  test('with backups: a verified safety backup holding the rows written since is taken before the down', async () => {
    const { p, root, v1 } = await twoReleases('manual-safety')
    const before = new Set(backupsOf(root))
    const r = await p.run(['rollback', '--json'])
    expect(r.code).toBe(0)
    expect(currentOf(root)).toBe(`releases/${v1}`)
    expect(tables()).toBe('notes,schema_version')
    expect(await answer(p.port)).toBe('version 1.0.0')
    const result = JSON.parse(r.stdout) as { backupName?: string }
    const safety = result.backupName as string
    expect(safety).toMatch(/^ledger_\d{8}_\d{6}$/)
    expect(before.has(safety)).toBe(false)
    expect(backupsOf(root)).toContain(safety)
    const meta = JSON.parse(readFileSync(join(root, 'backups', `${safety}.meta.json`), 'utf8')) as {
      reason: string
    }
    expect(meta.reason).toMatch(/before rollback/)
    const log = lastLog(p.logDir)
    expect(log).toContain(`safety backup ${safety}`)
    expect(log.indexOf('Backup created')).toBeLessThan(log.indexOf('$ bin/migrate down 1'))
    expect(historyOf(root).at(-1)).toMatchObject({ type: 'rollback', backup: safety, database: 'down' })

    // the safety backup holds the rows the down dropped: it verifies and restores them
    const verify = await p.run(['backups', 'verify', safety])
    expect(verify.code).toBe(0)
    const restored = await p.run(['restore', safety, '--yes'])
    expect(restored.code).toBe(0)
    expect(pg.psql("SELECT string_agg(id || ':' || label, ',' ORDER BY id) FROM tags", 'notes').trim()).toBe(
      '1:urgent,2:later'
    )
  })

  test('without backups: refused before anything changes, naming the down command; --yes runs it', async () => {
    const { p, root, v1, v2 } = await twoReleases('manual-nobackup', { backup: false })
    const historyBefore = historyOf(root)
    const r = await p.run(['rollback'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('bin/migrate down 1')
    expect(r.stderr).toContain('--yes')
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(tables()).toBe('notes,schema_version,tags')
    expect(lockExists(root)).toBe(false)
    // nothing changed: no history line that would make the target look failed to the next rollback
    expect(historyOf(root)).toEqual(historyBefore)

    const yes = await p.run(['rollback', '--yes'])
    expect(yes.code).toBe(0)
    expect(currentOf(root)).toBe(`releases/${v1}`)
    expect(tables()).toBe('notes,schema_version')
  })

  test('its target fails its checks after the down: the database goes back from the safety backup, then the code (exit 4)', async () => {
    const { p, root, v1, v2 } = await twoReleases('manual-target-fails')
    writeApp(join(root, 'releases', v1), { version: '1.0.0', healthy: false })
    const r = await p.run(['rollback', '--json'])
    expect(r.code).toBe(4)
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(await answer(p.port)).toBe('version 2.0.0')
    // v2's table is back with the rows written under it
    expect(version()).toBe('2')
    expect(pg.psql("SELECT string_agg(id || ':' || label, ',' ORDER BY id) FROM tags", 'notes').trim()).toBe(
      '1:urgent,2:later'
    )
    const log = lastLog(p.logDir)
    expect(log.indexOf('database restored from the safety backup')).toBeGreaterThan(
      log.indexOf('$ bin/migrate down 1')
    )
    expect(log.indexOf('database restored from the safety backup')).toBeLessThan(
      log.indexOf(`current -> releases/${v2} (restored)`)
    )
    expect(historyOf(root).at(-1)).toMatchObject({
      type: 'rollback',
      status: 'rolled-back',
      database: 'put-back'
    })
  })

  test('--yes without backups, and the target fails its checks: the left release migrates up again, then serves (exit 4)', async () => {
    const { p, root, v1, v2 } = await twoReleases('manual-yes-target-fails', { backup: false })
    writeApp(join(root, 'releases', v1), { version: '1.0.0', healthy: false })
    const r = await p.run(['rollback', '--yes'])
    expect(r.code).toBe(4)
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(await answer(p.port)).toBe('version 2.0.0')
    // v2's schema is back (its rows went with the down: that is what --yes without backups risks)
    expect(tables()).toBe('notes,schema_version,tags')
    expect(version()).toBe('2')
    const log = lastLog(p.logDir)
    expect(log).toContain(`migrating the database up again for releases/${v2}`)
    expect(log).toContain('database revision read back: 2')
  })

  test('--dry-run and `plan rollback` show the target, the down command and the switch; nothing changes', async () => {
    const { p, root, v1, v2 } = await twoReleases('manual-dry-run')
    const historyBefore = historyOf(root).length
    const backupsBefore = backupsOf(root).length
    for (const args of [
      ['rollback', '--dry-run'],
      ['plan', 'rollback']
    ]) {
      const r = await p.run(args)
      expect(r.code).toBe(0)
      expect(r.stdout).toContain(`rollback from ${v2} to ${v1}`)
      expect(r.stdout).toContain('bin/migrate down 1')
      expect(r.stdout).toContain('safety backup')
      expect(r.stdout).toContain(`current -> releases/${v1}`)
      expect(r.stdout).toContain('bin/restart')
      expect(currentOf(root)).toBe(`releases/${v2}`)
      expect(tables()).toBe('notes,schema_version,tags')
      expect(version()).toBe('2')
      expect(lockExists(root)).toBe(false)
      expect(historyOf(root).length).toBe(historyBefore)
      expect(backupsOf(root).length).toBe(backupsBefore)
    }
    expect(await answer(p.port)).toBe('version 2.0.0')
  })
})

describe('a manual rollback whose target fails its checks', () => {
  async function twoPlain(name: string) {
    reset()
    const { p, root } = await app(name, { command: 'bin/migrate up', revision: 'bin/migrate current' })
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(0)
    const v1 = currentOf(root) as string
    p.app({ version: '2.0.0' })
    expect((await p.deploy()).code).toBe(0)
    const v2 = currentOf(root) as string
    return { p, root, v1: v1.replace(/^releases\//, ''), v2: v2.replace(/^releases\//, '') }
  }

  test('the release that served before is put back, restarted and verified once: exit 4', async () => {
    const { p, root, v1, v2 } = await twoPlain('target-fails')
    // the target has gone bad on disk since it served
    writeApp(join(root, 'releases', v1), { version: '1.0.0', healthy: false })
    const r = await p.run(['rollback', '--json'])
    expect(r.code).toBe(4)
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(await answer(p.port)).toBe('version 2.0.0')
    const result = JSON.parse(r.stdout) as { verdict: string; status: string }
    expect(result.verdict).toContain(`Rollback failed its checks; back on ${v2}`)
    expect(result.status).toBe('rolled-back')
    const log = lastLog(p.logDir)
    expect(log.match(/previous release verified healthy/g)?.length).toBe(1)
    expect(historyOf(root).at(-1)).toMatchObject({
      type: 'rollback',
      release: v1,
      from: v2,
      status: 'rolled-back'
    })
    expect(lockExists(root)).toBe(false)
  })

  test('exit 5 only when the release put back fails its checks too', async () => {
    const { p, root, v1, v2 } = await twoPlain('target-fails-both')
    writeApp(join(root, 'releases', v1), { version: '1.0.0', healthy: false })
    writeApp(join(root, 'releases', v2), { version: '2.0.0', healthy: false })
    const r = await p.run(['rollback', '--json'])
    expect(r.code).toBe(5)
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(lockExists(root)).toBe(false)
  })
})

describe('an automatic rollback verifies the restored release once', () => {
  test('one "previous release verified healthy" line', async () => {
    reset()
    const { p } = await app('verify-once', { command: 'bin/migrate up', revision: 'bin/migrate current' })
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    expect((await p.deploy()).code).toBe(0)
    p.app({ version: '2.0.0', healthy: false })
    expect((await p.deploy()).code).toBe(4)
    const log = lastLog(p.logDir)
    expect(log.match(/previous release verified healthy/g)?.length).toBe(1)
    expect(
      log.match(/\[rollback\] \[[^\]]+\] GET http:\/\/127\.0\.0\.1:\d+\/health: HTTP 200/g)?.length
    ).toBe(1)
  })
})

describe('the rollback section shows only what was undone', () => {
  test('a preflight failure (a shared file missing on the host): no `== rollback` header, no undo rows, exit 3', async () => {
    reset()
    const { p, root } = await app(
      'preflight-fails',
      { command: 'bin/migrate up', revision: 'bin/migrate current' },
      { shared: { files: ['.env', 'config/missing.yml'], dirs: [] } }
    )
    p.app({ version: '1.0.0' })
    withMigrations(p, [M1])
    const r = await p.deploy()
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('== preflight')
    expect(r.stderr).toContain('config/missing.yml missing')
    expect(r.stderr).not.toContain('== rollback')
    expect(r.stderr).not.toMatch(/^\s+undo /m)
    expect(currentOf(root)).toBeUndefined()
    expect(lockExists(root)).toBe(false)
  })
})
