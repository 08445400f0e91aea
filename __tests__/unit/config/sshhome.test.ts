import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { sshSources, validateConfig } from '../../../src/config/load.js'
import { chooseAgent, WINDOWS_AGENT_PIPE } from '../../../src/config/sshhome.js'
import { ConfigError } from '../../../src/core/exit.js'
import { cleanup, tempDir } from '../helpers/shell.js'

const HOST_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'

let dir: string
beforeAll(() => {
  dir = tempDir('sshhome')
})
afterAll(() => cleanup(dir))

let n = 0
/** A fresh home with ~/.ssh holding `files` (name → text, or a key to generate). */
function home(files: Record<string, string | { key: string; passphrase?: string }>): string {
  const h = join(dir, `home${n++}`)
  mkdirSync(join(h, '.ssh'), { recursive: true })
  for (const [name, content] of Object.entries(files)) {
    const file = join(h, '.ssh', name)
    if (typeof content === 'string') writeFileSync(file, content)
    else
      execFileSync('ssh-keygen', [
        '-q',
        '-t',
        'ed25519',
        '-N',
        content.passphrase ?? '',
        '-C',
        content.key,
        '-f',
        file
      ])
  }
  return h
}

const config = (
  ssh: Record<string, unknown> = {},
  host: Record<string, unknown> = { address: '10.0.0.1' }
) => ({
  app: 'ledger',
  path: '/srv/ledger',
  hosts: [host],
  ssh
})

function problems(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): string[] {
  try {
    validateConfig(raw, join(dir, 'x.yml'), {}, env)
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    return (e as ConfigError).problems
  }
  throw new Error('expected the config to be invalid')
}

describe('keys from the home when safe-deploy.yml gives none', () => {
  test('the first default identity file that can be used; its text is a secret', () => {
    const h = home({
      id_ed25519: { key: 'a', passphrase: 'pw' },
      id_rsa: { key: 'b' },
      known_hosts: `10.0.0.1 ${HOST_KEY}\n`
    })
    const l = validateConfig(config(), join(dir, 'x.yml'), {}, { HOME: h })
    const key = readFileSync(join(h, '.ssh', 'id_rsa'), 'utf8')
    expect(l.auth.privateKey).toBe(key)
    expect(l.auth.keySource).toBe('~/.ssh/id_rsa')
    expect(l.auth.agent).toBeUndefined()
    expect(l.secrets).toContain(key)
    expect(sshSources(l)).toBe('ssh: key from ~/.ssh/id_rsa, host keys from ~/.ssh/known_hosts')
  })

  test('a passphrase-protected default key is used with ssh.passphrase', () => {
    const h = home({
      id_ed25519: { key: 'a', passphrase: 'the-passphrase' },
      known_hosts: `10.0.0.1 ${HOST_KEY}\n`
    })
    expect(problems(config({ passphrase: 'not-the-passphrase' }), { HOME: h })[0]).toContain(
      '~/.ssh/id_ed25519 (ssh.passphrase does not open it)'
    )
    const ok = validateConfig(config({ passphrase: 'the-passphrase' }), join(dir, 'x.yml'), {}, { HOME: h })
    expect(ok.auth.keySource).toBe('~/.ssh/id_ed25519')
  })

  test('no agent and no usable key: one problem that lists every place looked at and the fix', () => {
    const h = home({ id_ed25519: { key: 'a', passphrase: 'pw' }, known_hosts: `10.0.0.1 ${HOST_KEY}\n` })
    const [p, ...rest] = problems(config(), { HOME: h })
    expect(rest).toEqual([])
    expect(p).toMatch(
      /^ssh\.private_key: required for SSH hosts \(env:NAME, or ssh\.private_key_file: path\); looked at: /
    )
    expect(p).toContain('the SSH agent (SSH_AUTH_SOCK is not set')
    expect(p).toContain('~/.ssh/id_ed25519 (passphrase-protected: add it to the agent with ssh-add')
    expect(p).toContain('~/.ssh/id_ecdsa (not found)')
    expect(p).toContain('~/.ssh/id_rsa (not found)')
    expect(p).toContain('ssh-add')
    expect(p).not.toContain('PRIVATE KEY')
  })

  test('the agent when SSH_AUTH_SOCK names a socket and no key is given; not when a key is given', () => {
    const h = home({ known_hosts: `10.0.0.1 ${HOST_KEY}\n`, id_ed25519: { key: 'a' } })
    const sock = join(h, 'agent.sock')
    writeFileSync(sock, '')
    const l = validateConfig(config(), join(dir, 'x.yml'), {}, { HOME: h, SSH_AUTH_SOCK: sock })
    expect(l.auth).toMatchObject({ agent: sock, agentLabel: 'the SSH agent (SSH_AUTH_SOCK)' })
    // with an agent, the default identity files are not read
    expect(l.auth.privateKey).toBeUndefined()
    expect(sshSources(l)).toBe(
      'ssh: key from the SSH agent (SSH_AUTH_SOCK), host keys from ~/.ssh/known_hosts'
    )
    const key = readFileSync(join(h, '.ssh', 'id_ed25519'), 'utf8')
    const given = validateConfig(
      config({ private_key: key }),
      join(dir, 'x.yml'),
      {},
      { HOME: h, SSH_AUTH_SOCK: sock }
    )
    expect(given.auth.agent).toBeUndefined()
    const off = problems(config({ agent: 'off' }), { HOME: join(dir, 'nohome'), SSH_AUTH_SOCK: sock })
    expect(off[0]).toMatch(/^ssh\.private_key: required/)
  })

  test('ssh.agent: a path is used as given (also with a key); pageant only on Windows; a missing path', () => {
    const h = home({ known_hosts: `10.0.0.1 ${HOST_KEY}\n`, id_ed25519: { key: 'a' } })
    const sock = join(h, 'other.sock')
    writeFileSync(sock, '')
    const key = readFileSync(join(h, '.ssh', 'id_ed25519'), 'utf8')
    const l = validateConfig(config({ agent: sock, private_key: key }), join(dir, 'x.yml'), {}, { HOME: h })
    expect(l.auth).toMatchObject({ agent: sock, privateKey: key })
    if (process.platform !== 'win32')
      expect(problems(config({ agent: 'pageant' }), { HOME: h })).toEqual([
        'ssh.agent: pageant is only on Windows; give a socket path or auto'
      ])
    expect(problems(config({ agent: join(h, 'gone.sock') }), { HOME: h })[0]).toContain('does not exist')
  })
})

describe('~/.ssh/known_hosts when safe-deploy.yml gives no host keys', () => {
  test('read from the home; a line ssh would skip is skipped, line numbers kept', () => {
    const h = home({ known_hosts: `garbage line\n10.0.0.1 ${HOST_KEY}\n`, id_ed25519: { key: 'a' } })
    const l = validateConfig(config(), join(dir, 'x.yml'), {}, { HOME: h })
    expect(l.auth.knownHosts?.split('\n')[1]).toBe(`10.0.0.1 ${HOST_KEY}`)
    expect(l.auth.knownHosts?.split('\n')[0]).toMatch(/^#/)
    expect(l.auth.hostKeySource).toBe('~/.ssh/known_hosts')
  })

  test('missing: the error says which file it looked at', () => {
    const h = home({ id_ed25519: { key: 'a' } })
    const p = problems(config(), { HOME: h })
    expect(p).toHaveLength(1)
    expect(p[0]).toMatch(/^ssh\.known_hosts: host keys are verified; give known_hosts/)
    expect(p[0]).toContain(`looked at ~/.ssh/known_hosts (${join(h, '.ssh', 'known_hosts')}): not found`)
  })

  test('safe-deploy.yml wins: its known_hosts is used, the home file is not read', () => {
    const h = home({ known_hosts: `10.0.0.1 ${HOST_KEY}\n`, id_ed25519: { key: 'a' } })
    const l = validateConfig(
      config({ known_hosts: `10.9.9.9 ${HOST_KEY}` }),
      join(dir, 'x.yml'),
      {},
      { HOME: h }
    )
    expect(l.auth.knownHosts).toBe(`10.9.9.9 ${HOST_KEY}`)
    expect(l.auth.hostKeySource).toBeUndefined()
  })
})

describe('~/.ssh/config host aliases', () => {
  const sshConfig = `Host prod
  HostName 10.0.0.9
  User deploy
  Port 2222
  IdentityFile ~/.ssh/id_prod
  HostKeyAlias prod-key
Host *
  User nobody
`
  test('HostName, User, Port, IdentityFile and HostKeyAlias of the alias; the name stays the alias', () => {
    const h = home({ config: sshConfig, id_prod: { key: 'p' }, known_hosts: `prod-key ${HOST_KEY}\n` })
    const l = validateConfig(config({}, { address: 'prod' }), join(dir, 'x.yml'), {}, { HOME: h })
    expect(l.hosts[0]).toMatchObject({
      name: 'prod',
      address: '10.0.0.9',
      port: 2222,
      user: 'deploy',
      keySource: '~/.ssh/id_prod',
      hostKeyAlias: 'prod-key'
    })
    const key = readFileSync(join(h, '.ssh', 'id_prod'), 'utf8')
    expect(l.hosts[0]?.privateKey).toBe(key)
    expect(l.secrets).toContain(key)
    expect(sshSources(l)).toBe(
      'ssh: key from ~/.ssh/id_prod, host keys from ~/.ssh/known_hosts, deploy@10.0.0.9:2222 via ~/.ssh/config alias prod'
    )
  })

  test('values in safe-deploy.yml win; an address no Host names is left alone (Host * alone does not count)', () => {
    const h = home({
      config: sshConfig,
      id_prod: { key: 'p' },
      id_ed25519: { key: 'a' },
      known_hosts: `10.0.0.1 ${HOST_KEY}\n`
    })
    const l = validateConfig(
      config({}, { address: 'prod', user: 'root', port: 22 }),
      join(dir, 'x.yml'),
      {},
      { HOME: h }
    )
    expect(l.hosts[0]).toMatchObject({ address: '10.0.0.9', port: 22, user: 'root' })
    const plain = validateConfig(config(), join(dir, 'x.yml'), {}, { HOME: h })
    expect(plain.hosts[0]).toMatchObject({ address: '10.0.0.1', port: 22, user: 'root' })
    expect(plain.hosts[0]?.alias).toBeUndefined()
  })

  test('a HostName under Host * alone does not rewrite every address', () => {
    const h = home({
      config: 'Host *\n  HostName %h.corp.example\n',
      id_ed25519: { key: 'a' },
      known_hosts: `10.0.0.1 ${HOST_KEY}\n`
    })
    const l = validateConfig(config(), join(dir, 'x.yml'), {}, { HOME: h })
    expect(l.hosts[0]).toMatchObject({ address: '10.0.0.1' })
    expect(l.hosts[0]?.alias).toBeUndefined()
  })

  test('an IdentityFile that is missing is listed when nothing else can log in', () => {
    const h = home({ config: sshConfig, known_hosts: `prod-key ${HOST_KEY}\n` })
    const p = problems(config({}, { address: 'prod' }), { HOME: h })
    expect(p[0]).toContain('IdentityFile of prod: ~/.ssh/id_prod (not found)')
  })

  test('ProxyJump: one hop (itself an alias) becomes the jump host, shared by the hosts behind it; several hops are refused', () => {
    const jumpConfig = `Host web1 web2
  ProxyJump ops@gate
Host web2
  Port 2200
Host gate
  HostName 10.0.0.254
  Port 2222
Host far
  ProxyJump a,b
`
    const h = home({ config: jumpConfig, id_ed25519: { key: 'a' }, known_hosts: `10.0.0.1 ${HOST_KEY}\n` })
    const raw = { ...config(), hosts: [{ address: 'web1' }, { address: 'web2' }] }
    const l = validateConfig(raw, join(dir, 'x.yml'), {}, { HOME: h })
    expect(l.hosts[0]?.jump).toMatchObject({
      label: 'gate:2222',
      address: '10.0.0.254',
      port: 2222,
      user: 'ops'
    })
    expect(l.hosts[1]?.jump).toBe(l.hosts[0]?.jump)
    expect(sshSources(l)).toContain('root@web2:2200 via ~/.ssh/config alias web2 (ProxyJump gate:2222)')
    // ssh.jump in safe-deploy.yml wins
    const own = validateConfig(
      { ...raw, ssh: { jump: { address: '10.9.9.9' } } },
      join(dir, 'x.yml'),
      {},
      { HOME: h }
    )
    expect(own.hosts[0]?.jump).toBeUndefined()
    expect(own.auth.jump?.address).toBe('10.9.9.9')
    expect(problems({ ...config(), hosts: [{ address: 'far' }] }, { HOME: h })).toEqual([
      'hosts: far: ProxyJump a,b (~/.ssh/config): only one hop [user@]host[:port] is followed; give ssh.jump instead'
    ])
  })
})

describe('chooseAgent on Windows', () => {
  test("the OpenSSH agent service's pipe when SSH_AUTH_SOCK is not set; Pageant when asked; nothing with a key", () => {
    expect(WINDOWS_AGENT_PIPE).toBe('\\\\.\\pipe\\openssh-ssh-agent')
    // (this machine has no such pipe: it is named as looked at)
    expect(chooseAgent('auto', false, { USERPROFILE: 'C:\\Users\\ann' }, 'C:\\Users\\ann', 'win32')).toEqual({
      looked: 'the SSH agent (SSH_AUTH_SOCK is not set, \\\\.\\pipe\\openssh-ssh-agent is not running)'
    })
    expect(chooseAgent('pageant', false, {}, undefined, 'win32')).toEqual({
      agent: 'pageant',
      label: 'Pageant'
    })
    expect(chooseAgent('pageant', true, {}, undefined, 'win32')).toEqual({
      agent: 'pageant',
      label: 'Pageant'
    })
    expect(chooseAgent('auto', true, {}, 'C:\\Users\\ann', 'win32')).toEqual({})
    expect(chooseAgent('off', false, {}, 'C:\\Users\\ann', 'win32')).toEqual({})
    // a bare environment (no home): the pipe is not looked at
    expect(chooseAgent('auto', false, {}, undefined, 'win32')).toEqual({
      looked: 'the SSH agent (SSH_AUTH_SOCK is not set)'
    })
  })
})
