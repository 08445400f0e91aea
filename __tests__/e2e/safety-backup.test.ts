/**
 * Backup safety, over real SSH to a real PostgreSQL: a Python app's SQLAlchemy-style DATABASE_URL works;
 * a compose-service backup before the first deploy names the real cause; a backup taken before risky
 * work can be kept out of retention; a plain copy next to the log is warned about; and with
 * `backup.sign_key` a forged backup (archive and checksums rewritten by someone who can write the backup
 * dir) is refused by verify and restore, while the key never reaches argv, logs or files.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { startPostgres, watchArgv, type PgServer } from './harness/db.js'
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
    let last = ''
    const take = async (...extra: string[]) => {
      const r = await k.run(['backup', '--json', ...extra])
      last = r.stdout
      expect(r.stderr).toContain('BACKUP SUCCESS')
      expect(r.code).toBe(0)
      return (JSON.parse(r.stdout) as { backupName: string }).backupName
    }
    const has = (name: string) => backupFiles(dir).includes(`${name}.sha256`)

    const kept = await take('--keep')
    expect(JSON.parse(last) as { protected: boolean }).toMatchObject({ backupName: kept, protected: true })
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

  describe('backup.sign_key', () => {
    const KEY = `sign-key-${Date.now()}-0123456789abcdef`
    let signRoot: string
    let dir: string
    let signed: Project
    let plain: Project
    const withKey = (r: string, key?: string) =>
      project({
        hosts: [host],
        root: r,
        config: c => ({
          ...c,
          backup: {
            databases: [{ engine: 'postgres', url: 'env:DATABASE_URL' }],
            files: ['shared/.env'],
            ...(key ? { sign_key: 'env:BACKUP_SIGN_KEY' } : {})
          }
        }),
        envExtra: { DATABASE_URL: url, ...(key ? { BACKUP_SIGN_KEY: key } : {}) }
      })
    const take = async (pr: Project, ...extra: string[]) => {
      const r = await pr.run(['backup', '--json', ...extra])
      expect(r.stderr).toContain('BACKUP SUCCESS')
      expect(r.code).toBe(0)
      return (JSON.parse(r.stdout) as { backupName: string }).backupName
    }
    const inDir = (cmd: string) => execFileSync('sh', ['-c', cmd], { cwd: dir, encoding: 'utf8' })

    beforeAll(async () => {
      signRoot = host.root('signed')
      dir = join(signRoot, 'backups')
      plain = await withKey(signRoot)
      signed = await withKey(signRoot, KEY)
    })
    afterAll(() => process.chdir(p.dir))

    test('a backup is signed; verify checks the signature; a genuine backup restores', async () => {
      const name = await take(signed)
      expect(backupFiles(dir).filter(f => f.startsWith(name))).toEqual([
        `${name}.dump`,
        `${name}.files.tar.gz`,
        `${name}.meta.json`,
        `${name}.sha256`,
        `${name}.sig`
      ])
      // the signature a person can check by hand (docs/backups.md)
      const want = createHmac('sha256', KEY)
        .update(
          `safe-deploy-backup-v1\n${name}\n${inDir(`sha256sum <${name}.sha256 | cut -c1-64`).trim()}\n${inDir(`sha256sum <${name}.meta.json | cut -c1-64`).trim()}\n`
        )
        .digest('hex')
      expect(readFileSync(join(dir, `${name}.sig`), 'utf8')).toBe(
        `safe-deploy-backup-v1 hmac-sha256 ${want}\n`
      )
      const v = await signed.run(['backups', 'verify', name])
      expect(v.stderr).not.toContain('refused')
      expect(v.code).toBe(0)
      expect(v.stdout).toContain(`${name}: signature and checksums match; read back: ${name}.dump`)
      const seeded = items()
      pg.psql("UPDATE items SET name = 'changed' WHERE id < 100", 'ledger')
      const r = await signed.run(['restore', name, '--yes'])
      expect(r.stderr).toContain('RESTORE SUCCESS')
      expect(r.code).toBe(0)
      expect(items()).toBe(seeded)
    })

    test('a forged archive with a recomputed .sha256 passes plain integrity but is refused with sign_key set', async () => {
      const good = await take(signed, '--keep') // not pruned by the backups after it
      pg.psql("INSERT INTO items VALUES (100000, 'planted by an attacker')", 'ledger')
      const evil = await take(plain) // a real, valid archive of the tampered database
      pg.psql('DELETE FROM items WHERE id = 100000', 'ledger')
      const before = items()
      // someone who can write the backup dir puts it in place of the good one, checksums and all
      inDir(`cp ${evil}.dump ${good}.dump && sha256sum ${good}.dump ${good}.files.tar.gz >${good}.sha256`)
      const integrity = await plain.run(['backups', 'verify', good])
      expect(integrity.code).toBe(0)
      expect(integrity.stdout).toContain(`${good}: checksums match`)

      const v = await signed.run(['backups', 'verify', good])
      expect(v.code).toBe(3)
      expect(v.stderr).toContain(
        `backup ${good} on ${host.address}:2222 is refused: its signature (${good}.sig) does not match its manifest and meta`
      )
      const files = backupFiles(dir)
      const r = await signed.run(['restore', good, '--yes', '--json'])
      expect(r.code).toBe(3)
      const out = JSON.parse(r.stdout) as { error: { stage: string; message: string }; safetyBackup?: string }
      expect(out.error.stage).toBe('check')
      expect(out.error.message).toContain('does not match its manifest and meta')
      expect(out.safetyBackup).toBeUndefined()
      expect(items()).toBe(before)
      expect(backupFiles(dir)).toEqual(files)

      // a whole signed set copied under another name does not pass either: the name is signed
      const other = await take(signed)
      for (const ext of ['dump', 'files.tar.gz', 'meta.json', 'sig'])
        inDir(`cp ${other}.${ext} ${good}.${ext}`)
      inDir(`sed 's/${other}/${good}/' ${other}.sha256 >${good}.sha256`)
      expect((await plain.run(['backups', 'verify', good])).code).toBe(0)
      const renamed = await signed.run(['backups', 'verify', good])
      expect(renamed.code).toBe(3)
      expect(renamed.stderr).toContain('does not match its manifest and meta')
    })

    test('a backup without a signature (made before sign_key, or .sig removed) is refused', async () => {
      const unsigned = await take(plain)
      expect(backupFiles(dir)).not.toContain(`${unsigned}.sig`)
      const v = await signed.run(['backups', 'verify', unsigned])
      expect(v.code).toBe(3)
      expect(v.stderr).toContain(
        `backup ${unsigned} on ${host.address}:2222 is refused: it has no signature (${unsigned}.sig)`
      )
      const r = await signed.run(['restore', unsigned, '--yes'])
      expect(r.code).toBe(3)
      expect(r.stderr).toContain('it has no signature')
    })

    test('the key never reaches argv, logs, reports, history or the backup dir; a short key is refused', async () => {
      const watch = watchArgv(5)
      try {
        const name = await take(signed)
        expect((await signed.run(['backups', 'verify', name])).code).toBe(0)
        expect((await signed.run(['restore', name, '--yes'])).code).toBe(0)
      } finally {
        watch.stop()
      }
      const seen = [...watch.seen]
      expect(seen.some(l => l.includes('pg_dump -Fc --no-password'))).toBe(true)
      for (const l of seen) expect(l).not.toContain(KEY)
      const files = [
        ...readdirSync(signed.logDir).map(f => join(signed.logDir, f)),
        join(signRoot, '.safe-deploy', 'deploy.log'),
        ...backupFiles(dir)
          .filter(f => !f.endsWith('.dump') && !f.endsWith('.gz'))
          .map(f => join(dir, f))
      ].filter(f => existsSync(f))
      expect(files.length).toBeGreaterThan(5)
      for (const f of files)
        expect({ f, found: readFileSync(f, 'utf8').includes(KEY) }).toEqual({ f, found: false })
      const short = await withKey(signRoot, 'short-key')
      const r = await short.run(['backups', 'list'])
      expect(r.code).toBe(2)
      expect(r.stderr).toContain('backup.sign_key: too short to be a key (at least 16 characters')
      expect(r.stderr).not.toContain('short-key')
    })
  })
})
