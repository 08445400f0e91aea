/**
 * Bad input gets a clear error before anything changes, and commands need only what they use (issue 7):
 * every test here runs the real CLI against real sshd hosts and checks what the host saw.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { ageKeyPair, startPostgres, type PgServer } from './harness/db.js'
import { writeApp } from './harness/app.js'
import { answer, cli, currentOf, historyOf, project, q, releasesOf, stopApp } from './support.js'

const pidFiles: string[] = []
let a: SshHost
let b: SshHost

beforeAll(async () => {
  a = await startSshd()
  b = await startSshd()
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  await stopAll()
})

/** How many connections sshd has accepted so far: a run refused at load must not add one. */
function connections(host: SshHost): number {
  return (readFileSync(host.logFile, 'utf8').match(/Connection from /g) ?? []).length
}

describe('bad input is refused before anything connects (exit 2, naming the key)', () => {
  test('a NUL byte in a config value', async () => {
    const root = a.root('nul')
    const p = await project({
      hosts: [a],
      root,
      config: c => ({ ...c, env: { ...(c.env as object), MODE: 'prod\0uction' } })
    })
    p.app({ version: '1.0.0' })
    const before = connections(a)
    const r = await p.deploy()
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('env.MODE: contains a NUL byte')
    expect(connections(a)).toBe(before)
    expect(existsSync(join(root, '.safe-deploy'))).toBe(false)
  })

  test('a host name with a line break that would forge a verdict line', async () => {
    const root = a.root('forged-name')
    const p = await project({
      hosts: [a],
      root,
      config: c => ({
        ...c,
        hosts: (c.hosts as Record<string, unknown>[]).map(h => ({
          ...h,
          name: 'web-1\n[2026-11-21 19:30:05] DEPLOYMENT SUCCESS (1.0 s)'
        }))
      })
    })
    p.app({ version: '1.0.0' })
    const before = connections(a)
    const r = await p.deploy()
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(
      'hosts[0].name: a host name must be one printable line (no line breaks, tabs or other control characters)'
    )
    expect(r.stderr).not.toContain('\n[2026-11-21 19:30:05] DEPLOYMENT SUCCESS')
    expect(connections(a)).toBe(before)
    expect(existsSync(join(root, '.safe-deploy'))).toBe(false)
  })

  test('a secret too short to redact (3 characters) is refused, saying why, instead of printed in clear', async () => {
    const root = a.root('short-secret')
    const p = await project({
      hosts: [a],
      root,
      config: c => ({ ...c, env: { ...(c.env as object), API_TOKEN: 'env:API_TOKEN' } }),
      envExtra: { API_TOKEN: 'x9z' }
    })
    p.app({ version: '1.0.0' })
    const before = connections(a)
    const r = await p.deploy()
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(
      'env.API_TOKEN: the value of env:API_TOKEN is 3 characters long; secrets are redacted (***) in every log and report, and one under 4 characters cannot be without mangling them'
    )
    expect(r.stderr).not.toContain('x9z')
    expect(connections(a)).toBe(before)
    expect(existsSync(join(root, '.safe-deploy'))).toBe(false)
  })

  test('every spelling of / as the deploy root, from the file or --path', async () => {
    const root = a.root('slash')
    const p = await project({ hosts: [a], root, config: c => ({ ...c, path: '/./' }) })
    p.app({ version: '1.0.0' })
    const before = connections(a)
    const r = await p.deploy()
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('path: "/./" is the root directory; expected a deploy root such as /srv/app')
    const flag = await p.deploy(['--path', '//'])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toContain('path: "//" is the root directory')
    expect(connections(a)).toBe(before)
  })
})

describe('the test stage quotes the source dir with the one quoting function', () => {
  test('a source dir named app$(touch X) runs nothing but the test command', async () => {
    const root = a.root('test-quoting')
    const p = await project({
      hosts: [a],
      root,
      config: c => ({
        ...c,
        source: { dir: './app$(touch pwned)', exclude: ['.git'] },
        stages: {
          ...(c.stages as object),
          test: 'test -f SOURCE_MARK && echo tested-in-"$(basename "$PWD")"'
        }
      })
    })
    pidFiles.push(join(root, 'shared', 'app.pid'))
    const src = join(p.dir, 'app$(touch pwned)')
    mkdirSync(src, { recursive: true })
    writeApp(src, { version: '1.0.0' })
    writeFileSync(join(src, 'SOURCE_MARK'), 'here\n')
    const r = await p.deploy()
    expect(r.stderr).toContain('tested-in-app$(touch pwned)')
    expect(r.code).toBe(0)
    // nothing ran from the name: not in the project dir (the cwd), not anywhere the shell could have been
    expect(existsSync(join(p.dir, 'pwned'))).toBe(false)
    expect(existsSync(join(src, 'pwned'))).toBe(false)
    expect(currentOf(root)).toMatch(/^releases\//)
    expect(await answer(p.port)).toBe('version 1.0.0')
  })
})

describe('--host selects hosts of the config', () => {
  test('by name or address: those hosts alone, keeping their name and path; an unknown one is exit 2 naming the known', async () => {
    // one client key for both hosts, as in production
    b.run(`cat ${q(`${a.privateKeyFile}.pub`)} >> ${q(join(b.dir, 'etc', 'authorized_keys'))}`)
    const rootA = a.root('select-a')
    const rootB = b.root('select-b')
    const p = await project({
      hosts: [a, b],
      // the app's env (PID_FILE, APP_LOG) points under the top-level path: web-b's own path
      root: rootB,
      config: c => ({
        ...c,
        hosts: [
          { name: 'web-a', address: a.address, port: a.port, user: 'root', path: rootA },
          { name: 'web-b', address: b.address, port: b.port, user: 'root' }
        ]
      })
    })
    pidFiles.push(join(rootB, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    const r = await p.deploy(['--host', 'web-b'])
    expect(r.stderr).toContain('[web-b] connected')
    expect(r.code).toBe(0)
    // web-b alone, under its name; web-a (with its own path) was not touched
    expect(currentOf(rootB)).toMatch(/^releases\//)
    expect(existsSync(join(rootB, 'current', 'VERSION'))).toBe(true)
    expect(existsSync(join(rootA, 'releases'))).toBe(false)
    expect(existsSync(join(rootA, 'current'))).toBe(false)
    expect(await answer(p.port)).toBe('version 1.0.0')
    const releaseB = currentOf(rootB)

    // by address: web-a, deployed to its own path, not the top-level one
    a.run(`mkdir -p ${q(`${rootA}/shared`)} && printf 'SECRET=from-shared\\n' > ${q(`${rootA}/shared/.env`)}`)
    p.app({ version: '2.0.0' })
    const ra = await p.deploy(['--host', a.address])
    expect(ra.stderr).toContain('[web-a] connected')
    expect(ra.code).toBe(0)
    expect(currentOf(rootA)).toMatch(/^releases\//)
    expect(readFileSync(join(rootA, 'current', 'VERSION'), 'utf8').trim()).toBe('2.0.0')
    expect(currentOf(rootB)).toBe(releaseB)
    expect(await answer(p.port)).toBe('version 2.0.0')

    const st = await p.run(['releases', '--host', `${b.address}:${b.port}`])
    expect(st.code).toBe(0)
    expect(st.stdout).toMatch(/^web-b:\n {2}\* \d{8}T\d{6}Z-/)

    const before = connections(a) + connections(b)
    const bad = await p.deploy(['--host', 'web-c'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain(
      `--host: "web-c" is not a host of this config; it has web-a (${a.address}), web-b (${b.address})`
    )
    expect(connections(a) + connections(b)).toBe(before)
  })
})

describe('host keys fail closed with what to do', () => {
  test('known_hosts has only an RSA key, the server only ed25519: the offered key and the ssh-keyscan command', async () => {
    const keyDir = tempDir('safe-deploy-rsa-')
    execFileSync('/usr/bin/ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', join(keyDir, 'k')])
    const [type, blob] = readFileSync(join(keyDir, 'k.pub'), 'utf8').trim().split(/\s+/)
    const root = a.root('rsa-only')
    const p = await project({
      hosts: [a],
      root,
      envExtra: { KNOWN_HOSTS: `[${a.address}]:${a.port} ${type} ${blob}` }
    })
    p.app({ version: '1.0.0' })
    const r = await p.deploy()
    expect(r.code).toBe(3)
    expect(r.stderr).toContain(
      `host key for ${a.address}:${a.port} cannot be checked: the server offered ssh-ed25519 ${a.hostKeyFingerprint}, ` +
        'and known_hosts has only ssh-rsa for this host (line 1); ' +
        `run \`ssh-keyscan -p ${a.port} -t ed25519 ${a.address}\`, check the key out of band and add it to known_hosts`
    )
    expect(r.stderr).not.toContain('no matching host key format')
    // fail closed: no retries of a connection that cannot be trusted, nothing on the host
    expect(r.stderr).not.toContain('retrying')
    expect(existsSync(join(root, '.safe-deploy'))).toBe(false)

    // a configured fingerprint of the server's key is accepted whatever types known_hosts holds
    const withFingerprint = await project({
      hosts: [a],
      root,
      envExtra: { KNOWN_HOSTS: `[${a.address}]:${a.port} ${type} ${blob}` },
      config: c => ({ ...c, ssh: { ...(c.ssh as object), fingerprints: [a.hostKeyFingerprint] } })
    })
    const ok = await withFingerprint.run(['lock', 'status'])
    expect(ok.stderr).toContain('connected')
    expect(ok.stdout).toContain('free')
    expect(ok.code).toBe(0)
  })
})

describe('commands need only what they use: DATABASE_URL and AGE_IDENTITY resolved lazily', () => {
  let pg: PgServer | undefined
  afterAll(async () => {
    await pg?.stop()
  })

  test('read-only commands run without them; deploy refuses before connecting; a backup needs no identity', async () => {
    pg = await startPostgres()
    pg.createDatabase('shop', 'shop_app', 'shop-app-password')
    pg.psql(
      "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one');",
      'shop'
    )
    pg.psql('ALTER TABLE items OWNER TO shop_app;', 'shop')
    const url = `postgres://shop_app:shop-app-password@127.0.0.1:${pg.port}/shop`
    const keys = ageKeyPair()
    const root = a.root('lazy-env')
    const p = await project({
      hosts: [a],
      root,
      config: c => ({
        ...c,
        app: 'shop',
        // the Python app reads DATABASE_URL too
        env: { ...(c.env as object), DATABASE_URL: 'env:DATABASE_URL' },
        backup: {
          databases: [{ engine: 'postgres', url: 'env:DATABASE_URL' }],
          encrypt: { recipients: [keys.recipient], identity: 'env:AGE_IDENTITY' }
        }
      })
    })
    pidFiles.push(join(root, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    const run = (args: string[], env: NodeJS.ProcessEnv) => cli([...args, '--config', p.configFile], env)
    const bare = { ...p.env }
    delete bare.DATABASE_URL
    delete bare.AGE_IDENTITY

    // neither variable set: the read-only commands work
    for (const args of [['releases'], ['status'], ['plan'], ['lock', 'status'], ['backups', 'list']]) {
      const r = await run(args, bare)
      expect({ args, code: r.code, stderr: r.stderr.includes('is not set') }).toEqual({
        args,
        code: 0,
        stderr: false
      })
    }
    // the database's name is in the URL, which is not known yet
    const status = await run(['status'], bare)
    expect(status.stdout).toContain(
      'database db0 (postgres): size unknown: not checked: DATABASE_URL is not set (backup.databases[0].url)'
    )
    const plan = await run(['plan'], bare)
    expect(plan.stdout).toContain('backup.databases[0].url needs DATABASE_URL, which is not set')

    // deploy uses DATABASE_URL: exit 2 naming the variable and the command, before connecting
    const before = connections(a)
    const refused = await run(['deploy'], bare)
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain(
      'backup.databases[0].url: environment variable DATABASE_URL is not set or empty (referenced as env:DATABASE_URL): `deploy` needs it'
    )
    expect(refused.stderr).toContain('env.DATABASE_URL: environment variable DATABASE_URL is not set')
    expect(connections(a)).toBe(before)
    expect(releasesOf(root)).toEqual([])

    // DATABASE_URL set, no identity (the private key stays out of CI): deploy and a nightly backup work,
    // encrypted to the recipient and checked by checksum
    const ci = { ...bare, DATABASE_URL: url }
    const deployed = await run(['deploy', '--json'], ci)
    expect(deployed.code).toBe(0)
    const backupName = (JSON.parse(deployed.stdout) as { backupName: string }).backupName
    expect(
      readFileSync(join(root, 'backups', `${backupName}.dump.age`))
        .subarray(0, 21)
        .toString()
    ).toBe('age-encryption.org/v1')
    expect(historyOf(root).at(-1)).toMatchObject({ type: 'deploy', status: 'success', backup: backupName })
    const nightly = await run(['backup'], ci)
    expect(nightly.code).toBe(0)
    // restoring needs the identity: refused before connecting, naming it and the command
    const restore = await run(['restore', backupName, '--yes'], ci)
    expect(restore.code).toBe(2)
    expect(restore.stderr).toContain(
      'backup.encrypt.identity: environment variable AGE_IDENTITY is not set or empty (referenced as env:AGE_IDENTITY): `restore` needs it'
    )
    // where the identity is, the backup taken without it decrypts and checks out
    const verify = await run(['backups', 'verify', backupName], { ...ci, AGE_IDENTITY: keys.identity })
    expect(verify.code).toBe(0)
    expect(verify.stdout).toContain(`read back: ${backupName}.dump.age`)
  })
})

describe('verdicts keep the line that explains the error', () => {
  test('a migration that dies with a Python traceback: the exception line, not the last frame or the footer', async () => {
    const root = a.root('traceback')
    const p = await project({
      hosts: [a],
      root,
      config: c => ({ ...c, stages: { ...(c.stages as object), migrate: 'python3 bin/migrate.py' } })
    })
    p.app({ version: '1.0.0' })
    // raised the way SQLAlchemy raises it: a chained DBAPI error, the SQL and the "Background" footer
    writeFileSync(
      join(p.dir, 'app', 'bin', 'migrate.py'),
      [
        'import sqlite3',
        'class ProgrammingError(Exception):',
        '    pass',
        "ProgrammingError.__module__ = 'sqlalchemy.exc'",
        'def execute(sql):',
        '    try:',
        "        sqlite3.connect(':memory:').execute(sql)",
        '    except sqlite3.OperationalError as e:',
        "        raise ProgrammingError('(sqlite3.OperationalError) %s\\n[SQL: %s]\\n(Background on this error at: https://sqlalche.me/e/20/f405)' % (e, sql)) from e",
        "execute('INSERT INTO userz (name) VALUES (1)')",
        ''
      ].join('\n')
    )
    const r = await p.deploy()
    expect(r.code).toBe(3)
    const verdict = r.stderr.split('\n').find(l => l.startsWith('DEPLOYMENT FAILED')) ?? ''
    expect(verdict).toContain(
      'sqlalchemy.exc.ProgrammingError: (sqlite3.OperationalError) no such table: userz'
    )
    expect(verdict).not.toContain('Background on this error')
    expect(verdict).not.toContain('File "')
  })
})
