/**
 * The engines' command builders: exact strings, and hostile values run through a real shell against fake
 * tools that record their argv and environment, so a value arrives whole and never runs as code.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import {
  pgCheck,
  pgDump,
  pgRestore,
  pgServerQuery,
  pgTablesQuery
} from '../../../src/backup-engines/postgres.js'
import { myCheck, myDump, myRestore, myServerQuery } from '../../../src/backup-engines/mysql.js'
import { sqliteCheck, sqliteDump, sqliteRestore } from '../../../src/backup-engines/sqlite.js'
import { filesCheck, filesDump, filesExtract, filesSwap } from '../../../src/backup-engines/files.js'
import {
  compressCommand,
  decompressCommand,
  decryptCommand,
  encryptCommand
} from '../../../src/backup-engines/compress.js'
import { runIn, type Target } from '../../../src/backup-engines/target.js'
import { describeTarget } from '../../../src/backup-engines/index.js'
import { cleanup, hostileValues, run, shells, tempDir } from '../helpers/shell.js'

const pg: Target = {
  index: 0,
  engine: 'postgres',
  label: 'shop',
  conn: { host: 'db.internal', port: 5433, user: 'app', database: 'shop', params: { PGSSLMODE: 'require' } },
  passwordVar: 'sd_pw0',
  compress: 'none'
}
const my: Target = {
  index: 1,
  engine: 'mysql',
  label: 'crm',
  conn: {
    host: 'db.internal',
    port: 3306,
    user: 'app',
    database: 'crm',
    params: { 'ssl-ca': '/etc/ca.pem' }
  },
  passwordVar: 'sd_pw1',
  compress: 'gzip'
}
const lite: Target = {
  index: 2,
  engine: 'sqlite',
  label: 'app',
  conn: { params: {} },
  path: '/srv/shop/shared/app.db',
  compress: 'gzip'
}
const inDb = (t: Target): Target => ({ ...t, container: { service: 'db', dir: '/srv/shop/current' } })
const MARIA = { dump: 'mariadb-dump', client: 'mariadb' }

describe('PostgreSQL', () => {
  test('pg_dump -Fc with every setting as a libpq variable and the password from a script variable', () => {
    expect(pgDump(pg)).toBe(
      'PGHOST=db.internal PGPORT=5433 PGUSER=app PGDATABASE=shop PGSSLMODE=require PGPASSWORD="$sd_pw0" pg_dump -Fc --no-password'
    )
  })
  test('pg_restore --clean --if-exists --single-transaction --no-owner into the named database', () => {
    expect(pgRestore(pg)).toBe(
      'PGHOST=db.internal PGPORT=5433 PGUSER=app PGDATABASE=shop PGSSLMODE=require PGPASSWORD="$sd_pw0" pg_restore --clean --if-exists --single-transaction --no-owner --no-password -d dbname=shop'
    )
    expect(pgRestore({ ...pg, conn: { ...pg.conn, database: "it's db" } })).toContain(
      `-d 'dbname='\\''it\\'\\''s db'\\'''`
    )
  })
  test('the check lists the table of contents, then drains its input', () => {
    expect(pgCheck(pg, '"$t/a0.toc"')).toBe('pg_restore --list >"$t/a0.toc" && cat >/dev/null')
  })
  test('server version and size, tables', () => {
    expect(pgServerQuery(pg)).toBe(
      `PGHOST=db.internal PGPORT=5433 PGUSER=app PGDATABASE=shop PGSSLMODE=require PGPASSWORD="$sd_pw0" psql -X -A -t -w -c 'SELECT current_setting('\\''server_version_num'\\'') || '\\'' '\\'' || pg_database_size(current_database())'`
    )
    expect(pgTablesQuery({ ...pg, conn: { params: {} }, passwordVar: undefined })).toMatch(
      /^psql -X -A -t -w -c 'SELECT schemaname/
    )
  })
  test('in a compose service: docker compose exec -T, each variable passed by name only', () => {
    expect(pgDump(inDb(pg))).toBe(
      'cd /srv/shop/current && PGHOST=db.internal PGPORT=5433 PGUSER=app PGDATABASE=shop PGSSLMODE=require PGPASSWORD="$sd_pw0" docker compose exec -T -e PGHOST -e PGPORT -e PGUSER -e PGDATABASE -e PGSSLMODE -e PGPASSWORD db pg_dump -Fc --no-password'
    )
    expect(pgCheck(inDb(pg), '"$t/a0.toc"')).toBe(
      'cd /srv/shop/current && docker compose exec -T db pg_restore --list >"$t/a0.toc" && cat >/dev/null'
    )
  })
  test('no password configured: no PGPASSWORD at all (a .pgpass on the host still works)', () => {
    expect(pgDump({ ...pg, passwordVar: undefined, conn: { database: 'shop', params: {} } })).toBe(
      'PGDATABASE=shop pg_dump -Fc --no-password'
    )
  })
})

describe('MySQL / MariaDB', () => {
  test('one database, consistent, with routines, triggers and events; MYSQL_PWD from a script variable', () => {
    expect(myDump(my, MARIA)).toBe(
      'MYSQL_PWD="$sd_pw1" mariadb-dump -h db.internal -P 3306 -u app --ssl-ca=/etc/ca.pem --single-transaction --routines --triggers --events --hex-blob --no-tablespaces --default-character-set=utf8mb4 -- crm'
    )
    expect(
      myDump(
        { ...my, passwordVar: undefined, conn: { database: 'crm', params: {} } },
        {
          dump: 'mysqldump',
          client: 'mysql'
        }
      )
    ).toBe(
      'mysqldump --single-transaction --routines --triggers --events --hex-blob --no-tablespaces --default-character-set=utf8mb4 -- crm'
    )
  })
  test('restore through the client', () => {
    expect(myRestore(my, MARIA)).toBe(
      'MYSQL_PWD="$sd_pw1" mariadb -h db.internal -P 3306 -u app --ssl-ca=/etc/ca.pem -- crm'
    )
    expect(myRestore(inDb(my), MARIA)).toBe(
      'cd /srv/shop/current && MYSQL_PWD="$sd_pw1" docker compose exec -T -e MYSQL_PWD db mariadb -h db.internal -P 3306 -u app --ssl-ca=/etc/ca.pem -- crm'
    )
  })
  test('the check wants the "-- Dump completed" line last and collects table names', () => {
    expect(myCheck('"$t/a1.check"')).toBe(
      'LC_ALL=C sed -n -e \'s/^CREATE TABLE `\\(.*\\)` (.*/TABLE=\\1/p\' -e \'$s/^-- Dump completed.*/COMPLETE/p\' >"$t/a1.check" && grep -qx COMPLETE "$t/a1.check"'
    )
    expect(myServerQuery(my, '"$c"')).toMatch(
      /^MYSQL_PWD="\$sd_pw1" "\$c" -h db.internal .* -N -B -e 'SELECT VERSION\(\)/
    )
  })
})

describe('SQLite', () => {
  test('the same small script runs on the host (temp files in the work dir) or in the container', () => {
    expect(sqliteDump(lite, 't')).toMatch(/^TMPDIR="\$t" sh -c '.*' sh \/srv\/shop\/shared\/app\.db$/s)
    expect(sqliteDump(lite, 't')).toContain('sqlite3 "$db" ".timeout 10000" ".backup copy.sqlite3"')
    expect(sqliteDump(lite, 't')).toContain('PRAGMA integrity_check')
    expect(sqliteDump(inDb(lite), 't')).toMatch(
      /^cd \/srv\/shop\/current && docker compose exec -T db sh -c '/
    )
    expect(sqliteRestore(lite, 't')).toContain('sqlite3 "$db" ".timeout 10000" ".restore restore.sqlite3"')
    expect(sqliteCheck(lite, 't')).toMatch(/^TMPDIR="\$t" sh -c '/)
  })
})

describe('files, compression, encryption', () => {
  test('exact commands', () => {
    expect(filesDump('/srv/shop', ['shared/.env', 'shared/uploads'])).toBe(
      [
        'cd /srv/shop || exit 1',
        'set --',
        'for p in shared/.env shared/uploads; do',
        '  if [ -e "$p" ] || [ -L "$p" ]; then set -- "$@" "./$p"; else echo "skipped $p: it does not exist" >&2; fi',
        'done',
        '[ $# -gt 0 ] || set -- -T /dev/null',
        'tar -cf - "$@"',
        'r=$?',
        '[ $r -eq 1 ] && { echo "tar: some files changed while they were archived; kept what was read" >&2; r=0; }',
        'exit $r'
      ].join('\n')
    )
    expect(filesCheck()).toBe('tar -tf - >/dev/null')
    expect(filesExtract('"$t"')).toBe('mkdir -p "$t"/files && tar -xf - -C "$t"/files')
    expect(compressCommand('gzip')).toBe('gzip -c')
    expect(compressCommand('zstd')).toBe('zstd -q -c -T0')
    expect(compressCommand('none')).toBeUndefined()
    expect(decompressCommand('gzip')).toBe('gzip -dc')
    expect(decompressCommand('zstd')).toBe('zstd -q -dc')
    expect(encryptCommand(['age1abc', 'age1def'])).toBe('age -r age1abc -r age1def')
    expect(decryptCommand('$t/identity')).toBe('age -d -i "$t/identity"')
  })
  test('describeTarget names the engine (errors say which database failed)', () => {
    expect(describeTarget(pg)).toBe('PostgreSQL database "shop"')
    expect(describeTarget(inDb(my))).toBe('MySQL database "crm" (compose service db)')
  })
})

describe('hostile values reach the tools whole, as argv or environment, and never run', () => {
  let dir: string
  let bin: string
  const marker = () => join(dir, 'PWNED')
  beforeAll(() => {
    dir = tempDir('sd-engines')
    bin = join(dir, 'bin')
    mkdirSync(bin)
    // each fake records its argv and the connection variables, NUL-separated
    const fake = `#!/bin/sh
out="$FAKE_OUT"
printf '%s\\0' "$(basename "$0")" "$@" > "$out.args"
printf '%s\\0' "\${PGHOST-<unset>}" "\${PGUSER-<unset>}" "\${PGDATABASE-<unset>}" "\${PGPASSWORD-<unset>}" "\${MYSQL_PWD-<unset>}" > "$out.env"
`
    for (const tool of ['pg_dump', 'pg_restore', 'mariadb-dump', 'mariadb', 'docker']) {
      writeFileSync(join(bin, tool), fake)
      chmodSync(join(bin, tool), 0o755)
    }
  })
  afterAll(() => cleanup(dir))

  const inContainer = (t: Target): Target => ({ ...t, container: { service: 'db', dir } })
  const nul = (f: string) => readFileSync(f, 'utf8').split('\0').slice(0, -1)

  async function runWith(cmd: string, password: string, shell: string) {
    const out = join(dir, 'out')
    const script = `sd_pw0=$SECRET\nsd_pw1=$SECRET\nunset SECRET\n${cmd}`
    const r = await run(shell, ['-c', script], {
      // HOME: Debian's bash reads ~/.bashrc when stdin is a socket, as Node's pipes are
      env: { PATH: `${bin}:/usr/bin:/bin`, HOME: dir, FAKE_OUT: out, SECRET: password }
    })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    return { args: nul(`${out}.args`), env: nul(`${out}.env`) }
  }

  for (const shell of shells()) {
    test(`PostgreSQL and MySQL settings and passwords (${shell})`, async () => {
      for (const v of hostileValues(marker())) {
        const conn = { host: v, user: v, database: v, params: {} }
        const p = await runWith(pgDump({ ...pg, conn }), v, shell)
        expect(p.args).toEqual(['pg_dump', '-Fc', '--no-password'])
        expect(p.env).toEqual([v, v, v, v, '<unset>'])
        const r = await runWith(pgRestore({ ...pg, conn }), v, shell)
        expect(r.args.slice(-2)).toEqual([
          '-d',
          `dbname=${/^[A-Za-z0-9_.-]+$/.test(v) ? v : `'${v.replace(/[\\']/g, c => `\\${c}`)}'`}`
        ])
        const myConn = { ...my.conn, host: v, user: v, database: v }
        const m = await runWith(myDump({ ...my, conn: myConn }, MARIA), v, shell)
        expect(m.args).toEqual([
          'mariadb-dump',
          '-h',
          v,
          '-P',
          '3306',
          '-u',
          v,
          '--ssl-ca=/etc/ca.pem',
          '--single-transaction',
          '--routines',
          '--triggers',
          '--events',
          '--hex-blob',
          '--no-tablespaces',
          '--default-character-set=utf8mb4',
          '--',
          v
        ])
        expect(m.env[4]).toBe(v)
        const d = await runWith(myRestore(inContainer({ ...my, conn: myConn }), MARIA), v, shell)
        expect(d.args).toEqual([
          'docker',
          'compose',
          'exec',
          '-T',
          '-e',
          'MYSQL_PWD',
          'db',
          'mariadb',
          '-h',
          v,
          '-P',
          '3306',
          '-u',
          v,
          '--ssl-ca=/etc/ca.pem',
          '--',
          v
        ])
        expect(d.env[4]).toBe(v)
      }
      expect(existsSync(marker())).toBe(false)
    })
  }

  test('file paths with spaces, quotes and $() are archived under their own names', async () => {
    const root = join(dir, 'root')
    const names = [
      "it's here",
      'a b  c',
      '$(touch PWNED)',
      '`touch PWNED`',
      'x;touch PWNED',
      '-n',
      'é ünïcödé'
    ]
    mkdirSync(join(root, 'shared'), { recursive: true })
    for (const n of names) writeFileSync(join(root, 'shared', n), n)
    const archive = join(dir, 'files.tar')
    const r = await run('/bin/sh', [
      '-c',
      `(${filesDump(root, [...names.map(n => `shared/${n}`), 'shared/missing'])}) > '${archive}'`
    ])
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('skipped shared/missing: it does not exist\n')
    const listed = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n')
    expect(listed.sort()).toEqual(names.map(n => `./shared/${n}`).sort())
    expect(existsSync(join(root, 'PWNED'))).toBe(false)
    expect(existsSync(join(root, 'shared', 'PWNED'))).toBe(false)
  })

  test('filesSwap puts each path back whole, keeping nothing added since', async () => {
    const root = join(dir, 'swap')
    const work = join(dir, 'work')
    mkdirSync(join(work, 'files', 'shared', 'up'), { recursive: true })
    writeFileSync(join(work, 'files', 'shared', 'up', 'a.txt'), 'old a')
    writeFileSync(join(work, 'files', 'shared', '.env'), 'OLD=1')
    mkdirSync(join(root, 'shared', 'up'), { recursive: true })
    writeFileSync(join(root, 'shared', 'up', 'a.txt'), 'new a')
    writeFileSync(join(root, 'shared', 'up', 'added.txt'), 'added later')
    writeFileSync(join(root, 'shared', '.env'), 'NEW=1')
    const r = await run('/bin/sh', [
      '-c',
      filesSwap(root, ['shared/up', 'shared/.env', 'shared/gone'], `'${work}'`)
    ])
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('shared/gone is not in the backup; left as it is\n')
    expect(readFileSync(join(root, 'shared', 'up', 'a.txt'), 'utf8')).toBe('old a')
    expect(existsSync(join(root, 'shared', 'up', 'added.txt'))).toBe(false)
    expect(readFileSync(join(root, 'shared', '.env'), 'utf8')).toBe('OLD=1')
    expect(existsSync(join(root, 'shared', 'up.safe-deploy-old'))).toBe(false)
  })
})

describe('runIn', () => {
  test('host: prefix assignments; container: cd, then docker compose exec -T with -e NAME', () => {
    const t = { ...pg, conn: { params: {} } }
    expect(runIn(t, [['A', { literal: "x y'z" }]], 'prog --flag')).toBe(`A='x y'\\''z' prog --flag`)
    expect(runIn(t, [], 'prog')).toBe('prog')
    expect(runIn(inDb(t), [], 'prog')).toBe('cd /srv/shop/current && docker compose exec -T db prog')
  })
})
