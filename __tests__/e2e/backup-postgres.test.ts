/**
 * A team deploys a PostgreSQL app with backups, encrypted with age: every deploy backs up first; they
 * back up, verify, list, download, break their data and restore it, over real SSH to a real server,
 * all through the CLI. A backup that is damaged is refused, a disk that fills publishes nothing and
 * stops the deploy, a wrong password stops it too, and no secret ever shows in a log, a report, history
 * or any process's argv.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawn, spawnSync, execFileSync } from 'node:child_process'
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync
} from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { ageKeyPair, startPostgres, watchArgv, type PgServer, PG_BIN } from './harness/db.js'
import { fakeDocker, pathWithout } from './harness/fakedocker.js'
import { currentOf, historyOf, lastLog, project, releasesOf, stopApp, type Project } from './support.js'

// a password that needs quoting in SQL, in a URL and in a shell
const PASSWORD = `pa ss'w"o$rd%@:/é-${Date.now()}`
const URL_PASSWORD = encodeURIComponent(PASSWORD)
let host: SshHost
let pg: PgServer
let root: string
let p: Project
let keys: { identity: string; recipient: string }
let url: string

const BACKUP_NAME = /^ledger_\d{8}_\d{6}$/

function seed(db = 'ledger') {
  pg.psql(
    `CREATE TABLE items (id int PRIMARY KEY, name text, note text, data bytea);
     INSERT INTO items VALUES
       (1, 'é ünïcödé 日本語 🚀', NULL, NULL),
       (2, 'quote '' "double" \\ back\\slash', E'line one\\nline two\\ttab', '\\x00ff00'),
       (3, '', NULL, (SELECT decode(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''), 'hex') FROM generate_series(1, 1048576)));
     INSERT INTO items SELECT g, md5(g::text), NULL, NULL FROM generate_series(4, 5000) g;
     CREATE TABLE notes (id int PRIMARY KEY, body text);
     INSERT INTO notes VALUES (1, 'keep me'), (2, NULL);
     ALTER TABLE items OWNER TO ledger_app; ALTER TABLE notes OWNER TO ledger_app;`,
    db
  )
}

const state = () => ({ items: pg.tableHash('ledger', 'items'), notes: pg.tableHash('ledger', 'notes') })

beforeAll(async () => {
  host = await startSshd()
  pg = await startPostgres()
  pg.createDatabase('ledger', 'ledger_app', PASSWORD)
  seed()
  keys = ageKeyPair()
  url = `postgres://ledger_app:${URL_PASSWORD}@127.0.0.1:${pg.port}/ledger`
  root = host.root('ledger')
  p = await project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      backup: {
        databases: [{ engine: 'postgres', url: 'env:DATABASE_URL' }],
        files: ['shared/.env'],
        encrypt: { recipients: [keys.recipient], identity: 'env:AGE_IDENTITY' },
        download: true
      }
    }),
    envExtra: { DATABASE_URL: url, AGE_IDENTITY: keys.identity }
  })
}, 120_000)

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
  await pg?.stop()
})

const backupFiles = () => (existsSync(join(root, 'backups')) ? readdirSync(join(root, 'backups')).sort() : [])

describe('backups of a PostgreSQL app', () => {
  let deployBackup: string
  let taken: string

  test('a deploy backs up first: the backup is published, in history, in the result, and copied to the runner', async () => {
    p.app({ version: '1.0.0' })
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(0)
    const result = JSON.parse(r.stdout) as Record<string, unknown>
    deployBackup = result.backupName as string
    expect(deployBackup).toMatch(BACKUP_NAME)
    expect(result.backupPath).toBe(`${root}/backups/${deployBackup}.dump.age`)
    expect(result.stages).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: 'backup', status: 'ok' })])
    )
    const names = (result.stages as { name: string }[]).map(s => s.name)
    expect(names.indexOf('backup')).toBeGreaterThan(names.indexOf('test'))
    expect(names.indexOf('backup')).toBeLessThan(names.indexOf('deploy'))
    expect(backupFiles()).toEqual([
      `${deployBackup}.dump.age`,
      `${deployBackup}.files.tar.gz.age`,
      `${deployBackup}.meta.json`,
      `${deployBackup}.sha256`
    ])
    for (const f of backupFiles()) expect(statSync(join(root, 'backups', f)).mode & 0o777).toBe(0o600)
    expect(historyOf(root).at(-1)).toMatchObject({ type: 'deploy', status: 'success', backup: deployBackup })
    const log = lastLog(p.logDir)
    expect(log).toMatch(
      new RegExp(`\\[backup\\] \\[${host.address}:2222\\] Backup created: ${deployBackup}\\.dump\\.age \\(`)
    )
    // download: true: next to the log, checksums checked, usable by sha256sum -c
    expect(
      readdirSync(p.logDir)
        .filter(f => f.startsWith(deployBackup))
        .sort()
    ).toEqual([
      `${deployBackup}.dump.age`,
      `${deployBackup}.files.tar.gz.age`,
      `${deployBackup}.meta.json`,
      `${deployBackup}.sha256`
    ])
    expect(
      execFileSync('sha256sum', ['-c', `${deployBackup}.sha256`], { cwd: p.logDir, encoding: 'utf8' })
    ).toBe(`${deployBackup}.dump.age: OK\n${deployBackup}.files.tar.gz.age: OK\n`)
  })

  test('round trip: backup, break the data (and migrate), restore: rows equal the seed by checksum', async () => {
    const seeded = state()
    const b = await p.run(['backup', '--json'])
    expect(b.code).toBe(0)
    taken = (JSON.parse(b.stdout) as { backupName: string }).backupName
    expect(taken).toMatch(BACKUP_NAME)
    pg.psql(
      `UPDATE items SET name = 'changed' WHERE id = 1;
       DELETE FROM items WHERE id > 2;
       DROP TABLE notes;
       CREATE TABLE migration_added (id int PRIMARY KEY); INSERT INTO migration_added VALUES (1);
       ALTER TABLE migration_added OWNER TO ledger_app;`,
      'ledger'
    )
    expect(pg.tableHash('ledger', 'items')).not.toBe(seeded.items)
    const refused = await p.run(['restore', taken])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain('run again with --yes')

    const r = await p.run(['restore', taken, '--yes', '--json'])
    expect(r.stderr).toContain('RESTORE SUCCESS')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as Record<string, unknown>
    expect(out.restored).toEqual([`${taken}.dump.age`, `${taken}.files.tar.gz.age`])
    expect(out.safetyBackup).toMatch(BACKUP_NAME)
    expect(state()).toEqual(seeded)
    // a table created after the backup (a migration) is left as it is, and the log says so
    expect(pg.psql('SELECT count(*) FROM migration_added', 'ledger').trim()).toBe('1')
    expect(out.leftTables).toEqual({ [`${taken}.dump.age`]: ['public.migration_added'] })
    expect(lastLog(p.logDir)).toContain(
      'has table(s) the backup does not: public.migration_added. They were left as they are'
    )
    pg.psql('DROP TABLE migration_added', 'ledger')
    // the safety backup holds the broken state: restoring it brings that back
    expect(backupFiles()).toContain(`${out.safetyBackup as string}.dump.age`)
  })

  test('list shows each backup: size, age, encrypted, verified, and the release it was taken for', async () => {
    const r = await p.run(['backups', 'list'])
    expect(r.code).toBe(0)
    const lines = r.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^NAME\s+SIZE\s+AGE\s+ENCRYPTED\s+VERIFIED\s+FOR$/)
    const release = currentOf(root)?.replace('releases/', '')
    expect(lines.find(l => l.startsWith(deployBackup))).toMatch(
      new RegExp(
        `^${deployBackup}\\s+\\d+\\.\\d (KiB|MiB)\\s+\\d+m\\s+yes\\s+yes\\s+before ${release} \\(success\\)$`
      )
    )
    expect(lines.find(l => l.startsWith(taken))).toMatch(/\s+yes\s+yes\s+manual$/)
    const json = JSON.parse((await p.run(['backups', 'list', '--json'])).stdout) as {
      backups: { name: string; encrypted: boolean; complete: boolean }[]
    }
    expect(json.backups.map(b => b.name)).toEqual(expect.arrayContaining([deployBackup, taken]))
    expect(json.backups.every(b => b.encrypted && b.complete)).toBe(true)
  })

  test('verify decrypts and reads the backup back; download copies it with checksums checked', async () => {
    const v = await p.run(['backups', 'verify', taken])
    expect(v.code).toBe(0)
    expect(v.stdout).toContain(
      `${taken}: checksums match; read back: ${taken}.dump.age, ${taken}.files.tar.gz.age`
    )
    const out = tempDir('safe-deploy-download-')
    const d = await p.run(['backups', 'download', taken, '--out', out])
    expect(d.code).toBe(0)
    expect(readdirSync(out).sort()).toEqual([
      `${taken}.dump.age`,
      `${taken}.files.tar.gz.age`,
      `${taken}.meta.json`,
      `${taken}.sha256`
    ])
    execFileSync('sha256sum', ['-c', `${taken}.sha256`], { cwd: out })
    // restorable by hand without safe-deploy (docs/backups.md)
    const idFile = join(out, 'identity')
    writeFileSync(idFile, keys.identity, { mode: 0o600 })
    const toc = execFileSync(
      'sh',
      ['-c', `age -d -i identity ${taken}.dump.age | ${PG_BIN}/pg_restore --list`],
      {
        cwd: out,
        encoding: 'utf8'
      }
    )
    expect(toc).toMatch(/TABLE public items ledger_app/)
  })

  test.each([
    [
      'one byte flipped',
      (f: string) => {
        const buf = readFileSync(f)
        const i = Math.floor(buf.length / 2)
        buf.writeUInt8(buf.readUInt8(i) ^ 0x01, i)
        writeFileSync(f, buf)
      }
    ],
    ['truncated by one byte', (f: string) => writeFileSync(f, readFileSync(f).subarray(0, -1))]
  ])('a backup with %s is refused by verify and by restore; nothing changes', async (_what, damage) => {
    const b = await p.run(['backup', '--json'])
    expect(b.code).toBe(0)
    const name = (JSON.parse(b.stdout) as { backupName: string }).backupName
    damage(join(root, 'backups', `${name}.dump.age`))
    const v = await p.run(['backups', 'verify', name])
    expect(v.code).toBe(3)
    expect(v.stderr).toContain(`backup ${name} failed verification`)
    expect(v.stderr).toContain(`${name}.dump.age: FAILED`)
    const before = state()
    const filesBefore = backupFiles()
    const r = await p.run(['restore', name, '--yes', '--json'])
    expect(r.code).toBe(3)
    const out = JSON.parse(r.stdout) as { error: { stage: string; message: string }; safetyBackup?: string }
    expect(out.error.stage).toBe('check')
    expect(out.error.message).toContain(`${name}.dump.age: FAILED`)
    expect(out.safetyBackup).toBeUndefined()
    expect(state()).toEqual(before)
    expect(backupFiles()).toEqual(filesBefore)
  })

  test('no secret reaches argv, logs, reports, history or backup metadata, even while a dump runs', async () => {
    // a lock held elsewhere makes pg_dump (and later pg_restore) wait in plain sight of `ps`
    const hold = (sql: string): Promise<unknown> => {
      const child = spawn(
        `${PG_BIN}/psql`,
        ['-X', '-q', '-h', pg.socketDir, '-p', String(pg.port), '-U', 'postgres', '-d', 'ledger', '-c', sql],
        { stdio: 'ignore' }
      )
      return new Promise(r => child.on('exit', r))
    }
    const waitForLock = async (mode: string) => {
      for (let i = 0; i < 100; i++) {
        if (
          pg
            .psql(
              `SELECT count(*) FROM pg_locks WHERE mode = '${mode}' AND granted AND relation = 'items'::regclass`,
              'ledger'
            )
            .trim() !== '0'
        )
          return
        await new Promise(r => setTimeout(r, 50))
      }
      throw new Error(`no ${mode} on items`)
    }
    const watch = watchArgv(5)
    let name: string
    try {
      let blocker = hold('BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(2); COMMIT;')
      await waitForLock('AccessExclusiveLock')
      const b = await p.run(['backup', '--json'])
      expect(b.code).toBe(0)
      name = (JSON.parse(b.stdout) as { backupName: string }).backupName
      await blocker
      blocker = hold('BEGIN; SELECT count(*) FROM items; SELECT pg_sleep(4); COMMIT;')
      await waitForLock('AccessShareLock')
      const r = await p.run(['restore', name, '--yes'])
      expect(r.code).toBe(0)
      await blocker
    } finally {
      watch.stop()
    }
    const seen = [...watch.seen]
    // the watcher did see the tools at work...
    expect(seen.some(l => l.includes('pg_dump -Fc --no-password'))).toBe(true)
    expect(seen.some(l => l.includes('pg_restore --clean --if-exists --single-transaction --no-owner'))).toBe(
      true
    )
    expect(seen.some(l => /^age -r age1/.test(l))).toBe(true)
    expect(seen.some(l => /^age -d -i \S+\/identity$/.test(l))).toBe(true)
    // ...and never a secret
    const secretKey = keys.identity.split('\n').find(l => l.startsWith('AGE-SECRET-KEY-')) as string
    const secrets = [PASSWORD, URL_PASSWORD, url, secretKey]
    for (const l of seen) for (const s of secrets) expect(l).not.toContain(s)
    const files = [
      ...readdirSync(p.logDir)
        .filter(f => /\.(log|json)$/.test(f))
        .map(f => join(p.logDir, f)),
      join(root, '.safe-deploy', 'history.jsonl'),
      join(root, '.safe-deploy', 'deploy.log'),
      ...backupFiles()
        .filter(f => f.endsWith('.meta.json') || f.endsWith('.sha256'))
        .map(f => join(root, 'backups', f))
    ]
    expect(files.length).toBeGreaterThan(5)
    for (const f of files) {
      const text = readFileSync(f, 'utf8')
      for (const s of secrets) expect({ file: f, found: text.includes(s) }).toEqual({ file: f, found: false })
    }
  })

  test('a failing backup (wrong password) refuses the deploy: exit 3, engine and stderr named, current unchanged', async () => {
    const current = currentOf(root)
    const releases = releasesOf(root)
    const files = backupFiles()
    const wrong = await project({
      hosts: [host],
      root,
      config: c => ({
        ...c,
        backup: {
          databases: [{ engine: 'postgres', url: 'env:DATABASE_URL' }],
          encrypt: { recipients: [keys.recipient] }
        }
      }),
      envExtra: { DATABASE_URL: `postgres://ledger_app:not-the-password@127.0.0.1:${pg.port}/ledger` }
    })
    wrong.app({ version: '2.0.0' })
    const r = await wrong.deploy(['--json'])
    expect(r.code).toBe(3)
    const out = JSON.parse(r.stdout) as { error: { stage: string; message: string }; backupName?: string }
    expect(out.error.stage).toBe('backup')
    expect(out.error.message).toContain('PostgreSQL database "ledger"')
    expect(out.error.message).toContain('password authentication failed for user "ledger_app"')
    expect(out.backupName).toBeUndefined()
    expect(currentOf(root)).toBe(current)
    expect(releasesOf(root)).toEqual(releases)
    expect(backupFiles()).toEqual(files)
    expect(lastLog(wrong.logDir)).toMatch(/DEPLOYMENT FAILED at backup on \S+: .*Nothing live was changed/)
    process.chdir(p.dir)
  })

  test('a disk that fills during the dump leaves no partial file and the deploy does not start', async () => {
    const dir = join(root, 'backups-small')
    mkdirSync(dir, { recursive: true })
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', dir])
    try {
      const current = currentOf(root)
      const releases = releasesOf(root)
      const full = await project({
        hosts: [host],
        root,
        config: c => ({
          ...c,
          backup: {
            dir: 'backups-small',
            databases: [{ engine: 'postgres', url: 'env:DATABASE_URL' }],
            encrypt: { recipients: [keys.recipient] }
          }
        }),
        envExtra: { DATABASE_URL: url }
      })
      full.app({ version: '3.0.0' })
      const r = await full.deploy(['--json'])
      expect(r.code).toBe(3)
      const out = JSON.parse(r.stdout) as { error: { stage: string; message: string } }
      expect(out.error.stage).toBe('backup')
      expect(out.error.message).toMatch(/nothing was published: .*no space left on device/is)
      expect(readdirSync(dir)).toEqual([])
      expect(currentOf(root)).toBe(current)
      expect(releasesOf(root)).toEqual(releases)
    } finally {
      spawnSync('umount', [dir])
      process.chdir(p.dir)
    }
  })

  test('status shows the database size', async () => {
    const r = await p.run(['status'])
    expect(r.stdout).toMatch(/^database ledger \(postgres\): \d+\.\d MiB$/m)
  })

  test('prune: dry run by default; --yes deletes by retention, keeping the newest and what kept releases need', async () => {
    const dir = join(root, 'backups')
    const newest = backupFiles()
      .filter(f => f.endsWith('.sha256'))
      .sort()
      .at(-1)
      ?.replace(/\.sha256$/, '') as string
    // three old backups, copies of the newest under older names
    const fake = (stamp: string) => {
      const name = `ledger_${stamp}`
      for (const f of readdirSync(dir).filter(f => f.startsWith(`${newest}.`))) {
        const to = f.replace(newest, name)
        const body = readFileSync(join(dir, f))
        writeFileSync(
          join(dir, to),
          f.endsWith('.sha256') ? body.toString().split(newest).join(name) : body,
          { mode: 0o600 }
        )
      }
      return name
    }
    const old = ['20260101_010000', '20260102_010000', '20260103_010000'].map(fake)
    // a kept release needs the oldest for its rollback
    const release = currentOf(root)?.replace('releases/', '') as string
    appendFileSync(
      join(root, '.safe-deploy', 'history.jsonl'),
      JSON.stringify({
        type: 'deploy',
        release,
        status: 'success',
        backup: old[0],
        actor: 'x',
        started: '',
        finished: '',
        duration_s: 0,
        hosts: []
      }) + '\n'
    )
    const tight = await project({
      hosts: [host],
      root,
      config: c => ({
        ...c,
        backup: {
          databases: [{ engine: 'postgres', url: 'env:DATABASE_URL' }],
          encrypt: { recipients: [keys.recipient] },
          retention: { daily: 2, weekly: 0, monthly: 0 }
        }
      }),
      envExtra: { DATABASE_URL: url }
    })
    const dry = await tight.run(['backups', 'prune'])
    expect(dry.code).toBe(0)
    expect(dry.stdout).toContain(`delete  ${old[1]}`)
    expect(dry.stdout).toContain(`keep    ${old[0]}  (protected)`)
    expect(dry.stdout).toContain(`keep    ${old[2]}  (daily 2026-01-03)`)
    expect(dry.stdout).toMatch(new RegExp(`keep    ${newest}  \\(daily \\d{4}-\\d\\d-\\d\\d, newest\\)`))
    expect(dry.stdout).toContain('dry run: nothing deleted')
    expect(backupFiles().some(f => f.startsWith(old[1] as string))).toBe(true)
    const yes = await tight.run(['backups', 'prune', '--yes'])
    expect(yes.code).toBe(0)
    const left = backupFiles()
    expect(left.some(f => f.startsWith(old[1] as string))).toBe(false)
    for (const kept of [old[0], old[2], newest]) expect(left).toContain(`${kept}.sha256`)
    expect(left.some(f => f.startsWith(deployBackup))).toBe(true) // protected by its release
    process.chdir(p.dir)
  })

  test('a missing or older pg_dump on the host is named, with the package to install', async () => {
    const dir = tempDir('sd-pgpath-')
    const withPath = (PATH: string) =>
      project({
        hosts: [host],
        root,
        config: c => ({
          ...c,
          env: { ...(c.env as object), PATH },
          backup: { databases: [{ engine: 'postgres', url: 'env:DATABASE_URL' }] }
        }),
        envExtra: { DATABASE_URL: url }
      })
    const missing = await (await withPath(pathWithout(dir, ['pg_dump']))).run(['backup'])
    expect(missing.code).toBe(3)
    expect(missing.stderr).toContain(
      `pg_dump not found on ${host.address}:2222: install postgresql-client-15`
    )
    // a pg_dump 13 in front of the real tools
    const old = join(dir, 'old')
    mkdirSync(old)
    writeFileSync(join(old, 'pg_dump'), '#!/bin/sh\necho "pg_dump (PostgreSQL) 13.16"\n', { mode: 0o755 })
    const older = await (await withPath(`${old}:/usr/bin:/bin`)).run(['backup'])
    expect(older.code).toBe(3)
    expect(older.stderr).toContain(
      `pg_dump on ${host.address}:2222 is version 13, older than the PostgreSQL 15 server of the PostgreSQL database "ledger": install postgresql-client-15`
    )
    process.chdir(p.dir)
  })

  test('in a compose service: pg_dump and pg_restore through `docker compose exec -T -e PG... db`', async () => {
    const docker = fakeDocker(tempDir('sd-docker-'))
    const c = await project({
      hosts: [host],
      root,
      config: base => ({
        ...base,
        env: { ...(base.env as object), PATH: `${docker.bin}:/usr/local/bin:/usr/bin:/bin` },
        backup: { databases: [{ engine: 'postgres', url: 'env:DATABASE_URL', container: 'db' }] }
      }),
      envExtra: { DATABASE_URL: url }
    })
    const before = state()
    const b = await c.run(['backup', '--json'])
    expect(b.code).toBe(0)
    const name = (JSON.parse(b.stdout) as { backupName: string }).backupName
    pg.psql('DELETE FROM items WHERE id > 10', 'ledger')
    const r = await c.run(['restore', name, '--yes'])
    expect(r.code).toBe(0)
    expect(state()).toEqual(before)
    const env = '-e PGHOST -e PGPORT -e PGUSER -e PGDATABASE -e PGPASSWORD'
    const argv = docker.calls().map(x => x.argv)
    expect(argv).toContain(`compose exec -T ${env} db pg_dump -Fc --no-password`)
    expect(argv).toContain('compose exec -T db pg_restore --list')
    expect(argv).toContain(
      `compose exec -T ${env} db pg_restore --clean --if-exists --single-transaction --no-owner --no-password -d dbname=ledger`
    )
    expect(new Set(docker.calls().map(x => x.cwd))).toEqual(new Set([join(root, 'current')]))
    for (const a of argv) expect(a).not.toContain(PASSWORD)
    process.chdir(p.dir)
  })

  test('names are checked before connecting: a malformed name is exit 2, a missing one exit 3', async () => {
    const bad = await p.run(['restore', 'latest; rm -rf /', '--yes'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('is not a backup name; expected <app>_YYYYMMDD_HHMMSS')
    const other = await p.run(['backups', 'verify', 'blog_20260101_000000'])
    expect(other.code).toBe(2)
    const missing = await p.run(['backups', 'verify', 'ledger_20200101_000000'])
    expect(missing.code).toBe(3)
    expect(missing.stderr).toContain('backup ledger_20200101_000000 does not exist on')
  })
})
