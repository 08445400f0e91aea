import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { parse as parseYaml } from 'yaml'
import { loadConfig, requireEnv, validateConfig, type Overrides } from '../../../src/config/load.js'
import { ConfigError, ExitCode } from '../../../src/core/exit.js'
import { cleanup, tempDir } from '../helpers/shell.js'

/** The config from the issue, as written. */
const ISSUE_CONFIG = `app: ledger
path: /srv/ledger
hosts:
  - address: 127.0.0.2
    port: 2222
    user: root
ssh:
  private_key: env:SSH_KEY          # or private_key_file: path
  known_hosts: env:KNOWN_HOSTS      # or known_hosts_file: path; lines in OpenSSH known_hosts format
source:
  dir: ./app                        # packed on the runner, streamed to the host
  exclude: [.git, node_modules]
shared:
  files: [.env]
  dirs: [data, logs]
keep_releases: 5
stages:
  test: npm test                    # on the runner, before anything touches a server
  build: npm ci --omit=dev          # on the host, inside the new release
  restart: bin/restart              # on the host, inside the new release, after the switch
verify:
  http:
    url: http://127.0.0.1:18080/health   # fetched from the host (curl or wget there), or \`from: runner\`
    expect_status: 200
    retries: 10
    interval: 1s
`

const KEY =
  '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n-----END OPENSSH PRIVATE KEY-----'
const OTHER_KEY =
  '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAotherkeybodyAAAA\n-----END OPENSSH PRIVATE KEY-----'
const KNOWN = '[127.0.0.2]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1'
const ENV = { SSH_KEY: KEY, KNOWN_HOSTS: KNOWN }

let dir: string
let issueFile: string
beforeAll(() => {
  dir = tempDir('config')
  issueFile = join(dir, 'safe-deploy.yml')
  writeFileSync(issueFile, ISSUE_CONFIG)
})
afterAll(() => cleanup(dir))

const issueObject = () => parseYaml(ISSUE_CONFIG) as Record<string, unknown>
type Raw = Record<string, unknown> & {
  hosts: Record<string, unknown>[]
  ssh: Record<string, unknown>
  verify: { http: Record<string, unknown> }
}

/** The problems a config produces (fails the test if it is valid). */
function problemsOf(
  mutate: (c: Raw) => void,
  env: NodeJS.ProcessEnv = ENV,
  overrides: Overrides = {}
): string[] {
  const c = issueObject() as Raw
  mutate(c)
  try {
    validateConfig(c, join(dir, 'x.yml'), overrides, env)
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    return (e as ConfigError).problems
  }
  throw new Error('expected the config to be invalid')
}

describe('the issue’s example config', () => {
  test('loads as written', () => {
    const l = loadConfig(issueFile, {}, ENV)
    expect(l.file).toBe(issueFile)
    expect(l.baseDir).toBe(dir)
    expect(l.sourceDir).toBe(join(dir, 'app'))
    expect(l.hosts).toHaveLength(1)
    expect(l.hosts).toMatchObject([
      { name: '127.0.0.2:2222', kind: 'ssh', address: '127.0.0.2', port: 2222, user: 'root', primary: true }
    ])
    expect(l.auth).toEqual({
      privateKey: KEY,
      passphrase: undefined,
      knownHosts: KNOWN,
      fingerprints: [],
      insecure: false
    })
    expect(l.secrets).toEqual([KEY])
    const c = l.config
    expect(c.app).toBe('ledger')
    expect(c.path).toBe('/srv/ledger')
    expect(c.source).toEqual({ dir: './app', exclude: ['.git', 'node_modules'] })
    expect(c.shared).toEqual({ files: ['.env'], dirs: ['data', 'logs'] })
    expect(c.keep_releases).toBe(5)
    expect(c.stages).toEqual({ test: 'npm test', build: 'npm ci --omit=dev', restart: 'bin/restart' })
    expect(c.verify.http).toEqual({
      url: 'http://127.0.0.1:18080/health',
      expect_status: 200,
      retries: 10,
      interval: 1000,
      timeout: 5000,
      headers: {},
      from: 'host'
    })
    expect(c.verify.command).toBeUndefined()
  })

  test('gets the documented defaults for what it leaves out', () => {
    const c = loadConfig(issueFile, {}, ENV).config
    expect(c.env).toEqual({})
    expect(c.lock).toEqual({ ttl: 1_800_000 })
    expect(c.log_dir).toBe('safe-deploy-logs')
    expect(c.ssh).toMatchObject({
      fingerprints: [],
      insecure_skip_host_key_check: false,
      connect_timeout: 10_000,
      connect_retries: 3,
      keepalive_interval: 10_000,
      command_timeout: 600_000
    })
  })

  test('validateConfig on the parsed object gives the same result as loadConfig', () => {
    const a = validateConfig(issueObject(), issueFile, {}, ENV)
    const b = loadConfig(issueFile, {}, ENV)
    expect(a).toEqual(b)
  })

  test('validateConfig does not change the object it is given', () => {
    const obj = issueObject()
    const copy = structuredClone(obj)
    validateConfig(obj, issueFile, { host: '127.0.0.2', port: 22 }, ENV)
    expect(obj).toEqual(copy)
  })
})

describe('errors name the key path', () => {
  test('hosts[0].port', () => {
    expect(problemsOf(c => (c.hosts[0]!.port = 70000))).toEqual([
      'hosts[0].port: Too big: expected number to be <=65535'
    ])
  })

  test('keep_releases', () => {
    expect(problemsOf(c => (c.keep_releases = 1))).toEqual([
      'keep_releases: Too small: expected number to be >=2'
    ])
    expect(problemsOf(c => (c.keep_releases = 'five'))[0]).toMatch(/^keep_releases: .*expected number/)
  })

  test('verify.http.url', () => {
    const p = problemsOf(c => (c.verify.http.url = 'not a url'))
    expect(p).toHaveLength(1)
    expect(p[0]).toMatch(/^verify\.http\.url: /)
  })

  test('ssh.private_key: missing, or not a private key', () => {
    expect(problemsOf(c => delete c.ssh.private_key)).toEqual([
      'ssh.private_key: required for SSH hosts (env:NAME, or ssh.private_key_file: path)'
    ])
    expect(problemsOf(() => undefined, { ...ENV, SSH_KEY: 'ssh-ed25519 AAAA a public key' })).toEqual([
      'ssh.private_key: expected a PEM/OpenSSH private key (-----BEGIN ... PRIVATE KEY-----)'
    ])
  })

  test('ssh.known_hosts when there is no host key source and not insecure', () => {
    const p = problemsOf(c => delete c.ssh.known_hosts)
    expect(p).toHaveLength(1)
    expect(p[0]).toMatch(/^ssh\.known_hosts: host keys are verified; give known_hosts/)
    expect(p[0]).toContain('ssh.insecure_skip_host_key_check: true')
  })

  test('no known_hosts is fine with fingerprints, or when insecure, or for local hosts only', () => {
    const fp = issueObject() as Raw
    delete fp.ssh.known_hosts
    fp.ssh.fingerprints = ['SHA256:abc']
    expect(validateConfig(fp, issueFile, {}, ENV).auth.fingerprints).toEqual(['SHA256:abc'])

    const insecure = issueObject() as Raw
    delete insecure.ssh.known_hosts
    insecure.ssh.insecure_skip_host_key_check = true
    expect(validateConfig(insecure, issueFile, {}, ENV).auth.insecure).toBe(true)

    const local = issueObject() as Raw
    local.hosts = [{ local: true }]
    local.ssh = {}
    const l = validateConfig(local, issueFile, {}, {})
    expect(l.hosts).toHaveLength(1)
    expect(l.hosts).toMatchObject([
      { name: 'local', kind: 'local', address: 'localhost', port: 0, user: '', primary: true }
    ])
  })

  test('unknown keys, at the top level and nested', () => {
    const p = problemsOf(c => {
      c.extra = 1
      c.ssh.privat_key = 'x'
      c.hosts[0]!.adress = 'x'
    })
    expect(p).toEqual(
      expect.arrayContaining([
        '(top level): Unrecognized key: "extra"',
        'ssh: Unrecognized key: "privat_key"',
        'hosts[0]: Unrecognized key: "adress"'
      ])
    )
    expect(p).toHaveLength(3)
  })

  test('a missing environment variable names the variable and the key', () => {
    expect(problemsOf(() => undefined, { KNOWN_HOSTS: KNOWN })).toEqual([
      'ssh.private_key: environment variable SSH_KEY is not set or empty (referenced as env:SSH_KEY)'
    ])
    expect(problemsOf(() => undefined, { SSH_KEY: KEY, KNOWN_HOSTS: '' })).toEqual([
      'ssh.known_hosts: environment variable KNOWN_HOSTS is not set or empty (referenced as env:KNOWN_HOSTS)'
    ])
    const p = problemsOf(c => (c.path = 'env:DEPLOY_PATH'))
    expect(p).toEqual([
      'path: environment variable DEPLOY_PATH is not set or empty (referenced as env:DEPLOY_PATH)'
    ])
  })

  test('a relative path', () => {
    expect(problemsOf(c => (c.path = 'srv/ledger'))).toEqual([
      'path: expected an absolute path such as /srv/app, got "srv/ledger"'
    ])
    expect(problemsOf(c => (c.path = '/'))[0]).toMatch(/^path: /)
    expect(problemsOf(c => (c.path = '/srv/../etc'))[0]).toMatch(/^path: /)
    expect(problemsOf(c => (c.path = '/srv/a\nb'))[0]).toBe('path: must not contain NUL or line breaks')
  })

  test('every spelling of / is refused, for the top-level path and a host’s own', () => {
    for (const root of ['/', '//', '///', '/.', '/./', '/./.', '/.//./']) {
      expect(problemsOf(c => (c.path = root))).toEqual([
        `path: ${JSON.stringify(root)} is the root directory; expected a deploy root such as /srv/app`
      ])
      expect(problemsOf(c => (c.hosts[0]!.path = root))).toEqual([
        `hosts[0].path: ${JSON.stringify(root)} is the root directory; expected a deploy root such as /srv/app`
      ])
    }
    // the --path flag goes through the same rule
    expect(problemsOf(() => undefined, ENV, { path: '//' })).toEqual([
      'path: "//" is the root directory; expected a deploy root such as /srv/app'
    ])
  })

  test('`..` segments and relative paths are refused, per host too', () => {
    for (const bad of ['/srv/..', '/srv/../etc', '/../srv', 'srv/app', './srv', '../srv', '']) {
      const [problem, ...rest] = problemsOf(c => (c.hosts[0]!.path = bad))
      expect(rest).toEqual([])
      expect(problem).toMatch(/^hosts\[0\]\.path: expected (an absolute path|a path without \.\. segments)/)
    }
    expect(problemsOf(c => (c.hosts[0]!.path = '/srv/a\0b'))).toEqual(['hosts[0].path: contains a NUL byte'])
  })

  test('trailing slashes, repeated slashes and `.` segments are normalised away', () => {
    const cases: [string, string][] = [
      ['/srv/ledger/', '/srv/ledger'],
      ['//srv//ledger//', '/srv/ledger'],
      ['/srv/./ledger/.', '/srv/ledger'],
      ['/./srv', '/srv']
    ]
    for (const [given, normal] of cases) {
      const c = issueObject() as Raw
      c.path = given
      c.hosts = [{ address: 'a', path: given }, { address: 'b' }]
      const l = validateConfig(c, issueFile, {}, ENV)
      expect(l.config.path).toBe(normal)
      expect(l.hosts.map(h => h.path)).toEqual([normal, normal])
    }
  })

  test('`..` or an absolute path in shared files and dirs', () => {
    const msg = 'expected a path relative to the release, without `..` and not starting with /'
    expect(
      problemsOf(c => (c.shared = { files: ['.env', '../etc/passwd'], dirs: ['/var/data', 'a/../../b'] }))
    ).toEqual([`shared.files[1]: ${msg}`, `shared.dirs[0]: ${msg}`, `shared.dirs[1]: ${msg}`])
  })

  test('a bad app name', () => {
    for (const app of ['my app', '-ledger', 'a/b', '', 'x'.repeat(65), "le'dger"]) {
      expect(problemsOf(c => (c.app = app))).toEqual([
        'app: expected letters, digits, `.`, `_` or `-` (at most 64)'
      ])
    }
  })

  test('a bad duration names the key and the value', () => {
    expect(problemsOf(c => (c.lock = { ttl: '1x' }))).toEqual([
      'lock.ttl: expected a duration like 1s, 500ms or 10m, got "1x"'
    ])
    expect(problemsOf(c => (c.ssh.connect_timeout = '10 minutes'))).toEqual([
      'ssh.connect_timeout: expected a duration like 1s, 500ms or 10m, got "10 minutes"'
    ])
  })

  test('two primaries, or two hosts with one name', () => {
    expect(
      problemsOf(
        c =>
          (c.hosts = [
            { address: 'a', primary: true },
            { address: 'b', primary: true }
          ])
      )
    ).toEqual(['hosts: only one host can be primary, found 2'])
    expect(problemsOf(c => (c.hosts = [{ address: 'a' }, { address: 'b', name: 'a' }]))).toEqual([
      'hosts: two hosts are named a; give each a distinct name'
    ])
  })

  test('host names, addresses and users are one printable line', () => {
    const forged = 'web-1\n[2026-11-21 19:30:05] DEPLOYMENT SUCCESS (1.0 s)'
    const msg = 'must be one printable line (no line breaks, tabs or other control characters)'
    for (const name of [forged, 'web\r1', 'web\t1', 'web\x1b[2J1', 'web\u20281', 'web\x7f']) {
      expect(problemsOf(c => (c.hosts[0]!.name = name))).toEqual([`hosts[0].name: a host name ${msg}`])
    }
    expect(problemsOf(c => (c.hosts = [{ local: true, name: forged }]))).toEqual([
      `hosts[0].name: a host name ${msg}`
    ])
    expect(problemsOf(c => (c.hosts[0]!.address = 'web\n1'))).toEqual([`hosts[0].address: an address ${msg}`])
    expect(problemsOf(c => (c.hosts[0]!.user = 'ro\tot'))).toEqual([`hosts[0].user: a user ${msg}`])
    // printable names, unicode included, are fine
    const c = issueObject() as Raw
    c.hosts[0]!.name = 'web 1 (Zürich)'
    expect(validateConfig(c, issueFile, {}, ENV).hosts[0]?.name).toBe('web 1 (Zürich)')
  })

  test('an empty hosts list', () => {
    expect(problemsOf(c => (c.hosts = []))[0]).toMatch(/^hosts: /)
  })

  test('several problems are reported together, in one error that lists them all', () => {
    const c = issueObject() as Raw
    c.hosts[0]!.port = 0
    c.keep_releases = 200
    c.verify.http.url = 'not a url'
    c.app = 'bad name'
    c.path = 'env:NOT_SET_ANYWHERE'
    let err: ConfigError | undefined
    try {
      validateConfig(c, '/cfg/safe-deploy.yml', {}, ENV)
    } catch (e) {
      err = e as ConfigError
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect(err?.exitCode).toBe(ExitCode.badInput)
    const keys = err?.problems.map(p => p.split(':')[0]).sort()
    expect(keys).toEqual(['app', 'hosts[0].port', 'keep_releases', 'path', 'verify.http.url'])
    expect(err?.message.split('\n')).toEqual([
      'invalid config /cfg/safe-deploy.yml:',
      ...(err?.problems ?? []).map(p => `  - ${p}`)
    ])
  })
})

describe('loadConfig: the file itself', () => {
  test('a YAML syntax error names the file and the place', () => {
    const f = join(dir, 'broken.yml')
    writeFileSync(f, 'app: ledger\nhosts:\n  - address: [unclosed\n')
    expect(() => loadConfig(f, {}, ENV)).toThrow(ConfigError)
    expect(() => loadConfig(f, {}, ENV)).toThrow(
      new RegExp(`^${f.replace(/[.]/g, '\\.')}: not valid YAML: .*line \\d+`, 's')
    )
  })

  test('a missing file says so and how to fix it', () => {
    const f = join(dir, 'nope', 'safe-deploy.yml')
    expect(() => loadConfig(f, {}, ENV)).toThrow(
      `config file ${f} not found; create one (see README "Configuration") or pass --config`
    )
  })

  test('a file that is not a mapping', () => {
    const f = join(dir, 'list.yml')
    writeFileSync(f, '- a\n- b\n')
    expect(() => loadConfig(f, {}, ENV)).toThrow(
      `${f}: expected a mapping of keys (app, path, hosts, ...) at the top level`
    )
    writeFileSync(f, '')
    expect(() => loadConfig(f, {}, ENV)).toThrow(/expected a mapping/)
  })

  test('a relative file name is resolved against the working directory', () => {
    const cwd = process.cwd()
    try {
      process.chdir(dir)
      const l = loadConfig('safe-deploy.yml', {}, ENV)
      expect(l.file).toBe(issueFile)
      expect(l.sourceDir).toBe(join(dir, 'app'))
    } finally {
      process.chdir(cwd)
    }
  })
})

describe('overrides win over the file', () => {
  test('host selects hosts of the config by name or address, and each keeps its own settings', () => {
    const c = issueObject() as Raw
    c.hosts = [
      { address: '10.0.0.1', name: 'web-1', path: '/srv/web-1', primary: true },
      { address: '10.0.0.2', name: 'web-2', path: '/srv/web-2', port: 2202, user: 'deploy' },
      { address: '10.0.0.3', port: 2203 }
    ]
    const pick = (host: string) => validateConfig(c, issueFile, { host }, ENV).hosts
    expect(pick('web-2')).toEqual([
      {
        name: 'web-2',
        kind: 'ssh',
        address: '10.0.0.2',
        port: 2202,
        user: 'deploy',
        path: '/srv/web-2',
        primary: true,
        roles: []
      }
    ])
    // by address, by address:port, by the default name; in config order; the primary stays primary
    expect(pick(' 10.0.0.3:2203 , 10.0.0.1,,').map(h => [h.name, h.path, h.port, h.primary])).toEqual([
      ['web-1', '/srv/web-1', 22, true],
      ['10.0.0.3:2203', '/srv/ledger', 2203, false]
    ])
    expect(pick('10.0.0.2').map(h => h.name)).toEqual(['web-2'])
  })

  test('an unknown host is a config error listing the hosts the config has', () => {
    const c = issueObject() as Raw
    c.hosts = [{ address: '10.0.0.1', name: 'web-1' }, { address: '10.0.0.2' }]
    expect(problemsOf(r => (r.hosts = c.hosts), ENV, { host: 'web-1,web-9' })).toEqual([
      '--host: "web-9" is not a host of this config; it has web-1 (10.0.0.1), 10.0.0.2 (add a host to hosts: to deploy to it)'
    ])
  })

  test('port and user apply to every SSH host', () => {
    const c = issueObject() as Raw
    c.hosts = [{ address: 'a' }, { address: 'b', port: 2200, user: 'web' }]
    const l = validateConfig(c, issueFile, { port: 22, user: 'deploy' }, ENV)
    expect(l.hosts.map(h => [h.name, h.address, h.port, h.user])).toEqual([
      ['a', 'a', 22, 'deploy'],
      ['b', 'b', 22, 'deploy']
    ])
    const one = loadConfig(issueFile, { port: 2200 }, ENV)
    expect(one.hosts[0]).toMatchObject({
      address: '127.0.0.2',
      port: 2200,
      user: 'root',
      name: '127.0.0.2:2200'
    })
  })

  test('path', () => {
    expect(loadConfig(issueFile, { path: '/opt/ledger' }, ENV).config.path).toBe('/opt/ledger')
    expect(() => loadConfig(issueFile, { path: 'relative' }, ENV)).toThrow(/path: expected an absolute path/)
  })

  test('privateKey and knownHosts replace the env: references (which then need not be set)', () => {
    const l = loadConfig(issueFile, { privateKey: OTHER_KEY, knownHosts: 'other known hosts' }, {})
    expect(l.auth.privateKey).toBe(OTHER_KEY)
    expect(l.auth.knownHosts).toBe('other known hosts')
  })

  test('privateKeyFile and knownHostsFile are read, relative to the config file', () => {
    mkdirSync(join(dir, 'keys'), { recursive: true })
    writeFileSync(join(dir, 'keys', 'id_ed25519'), OTHER_KEY)
    writeFileSync(join(dir, 'keys', 'known_hosts'), 'from a file\n')
    const l = loadConfig(
      issueFile,
      { privateKeyFile: 'keys/id_ed25519', knownHostsFile: 'keys/known_hosts' },
      {}
    )
    expect(l.auth.privateKey).toBe(OTHER_KEY)
    expect(l.auth.knownHosts).toBe('from a file\n')
    expect(l.secrets).toEqual([OTHER_KEY])
  })

  test('a key file that cannot be read names the key and the file', () => {
    expect(() => loadConfig(issueFile, { privateKeyFile: 'keys/missing' }, ENV)).toThrow(
      `ssh.private_key_file: cannot read ${join(dir, 'keys/missing')}: ENOENT`
    )
  })

  test('insecureSkipHostKeyCheck', () => {
    const l = loadConfig(issueFile, { insecureSkipHostKeyCheck: true }, ENV)
    expect(l.auth.insecure).toBe(true)
    expect(l.config.ssh.insecure_skip_host_key_check).toBe(true)
  })

  test('port and user overrides leave local hosts alone', () => {
    const c = issueObject() as Raw
    c.hosts = [{ local: true }]
    const l = validateConfig(c, issueFile, { port: 2200, user: 'deploy' }, ENV)
    expect(l.hosts).toHaveLength(1)
    expect(l.hosts).toMatchObject([
      { name: 'local', kind: 'local', address: 'localhost', port: 0, user: '', primary: true }
    ])
  })
})

describe('secrets', () => {
  test('env: values under ssh.private_key, ssh.passphrase and env.* are secrets; others are not', () => {
    const c = issueObject() as Raw
    c.path = 'env:DEPLOY_PATH'
    c.ssh.passphrase = 'env:KEY_PASSPHRASE'
    c.env = { DB_PASSWORD: 'env:DB_PASSWORD', API: 'env:API_TOKEN', MODE: 'production', SHORT: 'abc' }
    const env = {
      ...ENV,
      DEPLOY_PATH: '/srv/from-env',
      KEY_PASSPHRASE: 'pass phrase',
      DB_PASSWORD: 'hunter2-db',
      API_TOKEN: 'tok_123456'
    }
    const l = validateConfig(c, issueFile, {}, env)
    expect(l.secrets.sort()).toEqual([KEY, 'hunter2-db', 'pass phrase', 'tok_123456'].sort())
    expect(l.secrets).not.toContain(KNOWN)
    expect(l.secrets).not.toContain('/srv/from-env')
    expect(l.secrets).not.toContain('production')
    // a value written in the config is not a secret, whatever its length
    expect(l.secrets).not.toContain('abc')
    expect(l.config.path).toBe('/srv/from-env')
    expect(l.config.env).toEqual({
      DB_PASSWORD: 'hunter2-db',
      API: 'tok_123456',
      MODE: 'production',
      SHORT: 'abc'
    })
    expect(l.auth.passphrase).toBe('pass phrase')
  })

  test('a secret under 4 characters is refused by key, saying why (it could not be redacted)', () => {
    const why =
      'secrets are redacted (***) in every log and report, and one under 4 characters cannot be without mangling them'
    expect(problemsOf(c => (c.env = { TOKEN: 'env:TOKEN' }), { ...ENV, TOKEN: 'abc' })).toEqual([
      `env.TOKEN: the value of env:TOKEN is 3 characters long; ${why}: use a longer secret, or write the value in the config if it is not secret`
    ])
    expect(problemsOf(c => (c.ssh.passphrase = 'env:PASSPHRASE'), { ...ENV, PASSPHRASE: 'x' })).toEqual([
      `ssh.passphrase: the value of env:PASSPHRASE is 1 character long; ${why}: use a longer secret, or write the value in the config if it is not secret`
    ])
    // inline passwords, in a URL or not, are secrets too
    const db = (extra: Record<string, unknown>) => (c: Raw) =>
      (c.backup = { databases: [{ engine: 'postgres', database: 'app', ...extra }] })
    expect(problemsOf(db({ password: 'pw' }))).toEqual([
      `backup.databases[0].password: the secret is 2 characters long; ${why}: use a longer secret`
    ])
    expect(problemsOf(db({ url: 'postgres://app:pw@db.internal/app' }))).toEqual([
      `backup.databases[0].url: the secret is 2 characters long; ${why}: use a longer secret`
    ])
    // 4 characters is enough, and is redacted
    const c = issueObject() as Raw
    c.env = { TOKEN: 'env:TOKEN' }
    expect(validateConfig(c, issueFile, {}, { ...ENV, TOKEN: 'abcd' }).secrets).toContain('abcd')
  })

  test('a NUL byte in any value, from the file, a flag or a variable, names the key', () => {
    expect(problemsOf(c => (c.env = { MODE: 'prod\0uction' }))).toEqual(['env.MODE: contains a NUL byte'])
    expect(problemsOf(c => (c.stages = { build: 'make\0 all' }))).toEqual([
      'stages.build: contains a NUL byte'
    ])
    expect(problemsOf(c => (c.env = { TOKEN: 'env:TOKEN' }), { ...ENV, TOKEN: 'tok\0en-value' })).toEqual([
      'env.TOKEN: the value of environment variable TOKEN contains a NUL byte'
    ])
    expect(
      problemsOf(() => undefined, { ...ENV, SSH_KEY: `${KEY}\0` }).filter(p => p.includes('NUL'))
    ).toEqual(['ssh.private_key: the value of environment variable SSH_KEY contains a NUL byte'])
    expect(problemsOf(c => (c.hosts[0]!.address = 'web\0.example'))).toEqual([
      'hosts[0].address: contains a NUL byte'
    ])
    expect(problemsOf(() => undefined, ENV, { user: 'ro\0ot' })).toEqual([
      'hosts[0].user: contains a NUL byte'
    ])
    expect(problemsOf(c => ((c as Record<string, unknown>).verify = { command: ['true', 'a\0b'] }))).toEqual([
      'verify.command[1]: contains a NUL byte'
    ])
  })

  test('one value referenced twice is listed once', () => {
    const c = issueObject() as Raw
    c.env = { A: 'env:TOKEN', B: 'env:TOKEN' }
    expect(validateConfig(c, issueFile, {}, { ...ENV, TOKEN: 'same-token' }).secrets.sort()).toEqual(
      [KEY, 'same-token'].sort()
    )
  })

  test('only whole-string env: references are resolved', () => {
    const c = issueObject() as Raw
    c.env = { A: 'prefix env:TOKEN', B: 'env:bad-name' }
    const l = validateConfig(c, issueFile, {}, { ...ENV, TOKEN: 'x' })
    expect(l.config.env).toEqual({ A: 'prefix env:TOKEN', B: 'env:bad-name' })
  })
})

describe('env: values only some commands use are resolved lazily', () => {
  const lazy = (c: Raw) => {
    c.env = { DATABASE_URL: 'env:DATABASE_URL', MODE: 'production' }
    c.stages = { migrate: 'alembic upgrade head' } as never
    c.backup = {
      databases: [{ engine: 'postgres', url: 'env:DATABASE_URL' }],
      encrypt: {
        recipients: ['age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq'],
        identity: 'env:AGE_IDENTITY'
      }
    }
  }
  const load = (env: NodeJS.ProcessEnv) => {
    const c = issueObject() as Raw
    lazy(c)
    return validateConfig(c, issueFile, {}, env)
  }

  test('DATABASE_URL and AGE_IDENTITY unset: the config loads, the values are left out and listed', () => {
    const l = load(ENV)
    expect(l.unresolved).toEqual([
      { key: 'env.DATABASE_URL', variable: 'DATABASE_URL' },
      { key: 'backup.databases[0].url', variable: 'DATABASE_URL' },
      { key: 'backup.encrypt.identity', variable: 'AGE_IDENTITY' }
    ])
    expect(l.config.env).toEqual({ MODE: 'production' })
    expect(l.config.backup && l.config.backup.databases[0]?.url).toBeUndefined()
    expect(l.config.backup && l.config.backup.encrypt?.identity).toBeUndefined()
  })

  test('read-only commands need none of them; the commands that use a value refuse, naming it and themselves', () => {
    const l = load(ENV)
    for (const [command, sub] of [
      ['releases'],
      ['status'],
      ['plan'],
      ['lock', 'status'],
      ['lock', 'release'],
      ['backups', 'list'],
      ['backups', 'prune'],
      ['backups', 'download']
    ] as [string, string?][])
      expect(() => requireEnv(l, command, { sub })).not.toThrow()
    const refusal = (command: string, opts: { sub?: string; restore?: boolean } = {}) => {
      try {
        requireEnv(l, command, opts)
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError)
        expect((e as ConfigError).exitCode).toBe(ExitCode.badInput)
        return (e as ConfigError).problems
      }
      throw new Error(`expected ${command} to refuse`)
    }
    const unset = (key: string, name: string) =>
      `${key}: environment variable ${name} is not set or empty (referenced as env:${name})`
    expect(refusal('deploy')).toEqual([
      `${unset('env.DATABASE_URL', 'DATABASE_URL')}: \`deploy\` needs it (its commands on the hosts get env:)`,
      `${unset('backup.databases[0].url', 'DATABASE_URL')}: \`deploy\` needs it (it backs up the databases before anything changes)`,
      `${unset('backup.encrypt.identity', 'AGE_IDENTITY')}: \`deploy\` needs it (a failed migration is undone by restoring the encrypted pre-deploy backup)`
    ])
    expect(refusal('backup').map(p => p.split(':')[0])).toEqual([
      'env.DATABASE_URL',
      'backup.databases[0].url'
    ])
    expect(refusal('restore').map(p => p.split(':')[0])).toEqual([
      'env.DATABASE_URL',
      'backup.databases[0].url',
      'backup.encrypt.identity'
    ])
    expect(refusal('backups', { sub: 'verify' })[0]).toContain('`backups verify` needs it')
    expect(refusal('rollback', { restore: true }).map(p => p.split(':')[0])).toContain(
      'backup.encrypt.identity'
    )
  })

  test('a backup needs the recipients, not the identity', () => {
    const l = load({ ...ENV, DATABASE_URL: 'postgres://app:secret-pw@db.internal/app' })
    expect(l.unresolved).toEqual([{ key: 'backup.encrypt.identity', variable: 'AGE_IDENTITY' }])
    expect(() => requireEnv(l, 'backup')).not.toThrow()
    expect(() => requireEnv(l, 'rollback')).not.toThrow()
    expect(() => requireEnv(l, 'restore')).toThrow(/AGE_IDENTITY is not set.*`restore` needs it/)
    // without a migration to undo by restoring, a deploy takes its backup without the identity too
    const c = issueObject() as Raw
    lazy(c)
    c.stages = {} as never
    expect(() =>
      requireEnv(
        validateConfig(c, issueFile, {}, { ...ENV, DATABASE_URL: 'postgres://app:secret-pw@db/app' }),
        'deploy'
      )
    ).not.toThrow()
  })

  test('keys every command uses still need their variable at load', () => {
    expect(problemsOf(c => (c.hosts[0]!.address = 'env:DEPLOY_HOST'))).toEqual([
      'hosts[0].address: environment variable DEPLOY_HOST is not set or empty (referenced as env:DEPLOY_HOST)'
    ])
  })
})

describe('durations parse to milliseconds', () => {
  test('in verify.http, lock and ssh', () => {
    const c = issueObject() as Raw
    c.verify.http.interval = '500ms'
    c.verify.http.timeout = 3
    c.lock = { ttl: '45m' }
    c.ssh.connect_timeout = '1.5s'
    c.ssh.command_timeout = '1h'
    c.ssh.keepalive_interval = '2m'
    const cfg = validateConfig(c, issueFile, {}, ENV).config
    expect(cfg.verify.http).toMatchObject({ interval: 500, timeout: 3000 })
    expect(cfg.lock.ttl).toBe(2_700_000)
    expect(cfg.ssh).toMatchObject({
      connect_timeout: 1500,
      command_timeout: 3_600_000,
      keepalive_interval: 120_000
    })
  })

  test('verify.http as a list of checks', () => {
    const c = issueObject() as Raw
    c.verify = {
      http: [
        { url: 'http://127.0.0.1:1/a' },
        { url: 'https://example.com/b', interval: '2s', from: 'runner' }
      ] as never
    }
    const http = validateConfig(c, issueFile, {}, ENV).config.verify.http
    expect(http).toEqual([
      {
        url: 'http://127.0.0.1:1/a',
        expect_status: 200,
        retries: 10,
        interval: 1000,
        timeout: 5000,
        headers: {},
        from: 'host'
      },
      {
        url: 'https://example.com/b',
        expect_status: 200,
        retries: 10,
        interval: 2000,
        timeout: 5000,
        headers: {},
        from: 'runner'
      }
    ])
  })
})
