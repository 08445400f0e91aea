/**
 * SSH from the user's ~/.ssh, as a person on a laptop has it: no key and no known_hosts in safe-deploy.yml;
 * the key in a real ssh-agent (openssh-client's ssh-agent and ssh-add), host keys in ~/.ssh/known_hosts,
 * the host named by a ~/.ssh/config alias. HOME is a temp dir; the CLI runs with it.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { startJumpHosts, type JumpNetwork } from './harness/netns.js'
import { actionStep, currentOf, lastLog, project, releasesOf, stopApp } from './support.js'
import { expectExit, spawnActionSource } from './harness/cliproc.js'

const pidFiles: string[] = []
const agents: ChildProcess[] = []
let a: SshHost
let b: SshHost

beforeAll(async () => {
  a = await startSshd()
  b = await startSshd()
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  for (const agent of agents) agent.kill()
  await stopAll()
})

/** A real ssh-agent on its own socket, holding the keys of `keyFiles` (ssh-add). */
async function agentWith(keyFiles: string[]): Promise<string> {
  const sock = join(tempDir('safe-deploy-agent-'), 'agent.sock')
  const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' })
  agents.push(agent)
  for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise(r => setTimeout(r, 50))
  for (const f of keyFiles)
    execFileSync('ssh-add', ['-q', f], { env: { SSH_AUTH_SOCK: sock }, stdio: 'pipe' })
  return sock
}

/** A HOME whose ~/.ssh holds `files`. */
function homeWith(files: Record<string, string>): string {
  const home = tempDir('safe-deploy-home-')
  mkdirSync(join(home, '.ssh'), { recursive: true, mode: 0o700 })
  for (const [name, text] of Object.entries(files))
    writeFileSync(join(home, '.ssh', name), text, { mode: 0o600 })
  return home
}

const aliasConfig = (host: SshHost, user = 'root') =>
  `Host prod\n  HostName ${host.address}\n  Port ${host.port}\n  User ${user}\n\nHost *\n  ServerAliveInterval 30\n`

/** A project whose safe-deploy.yml names the host `prod` and gives no key and no host keys. */
async function homeProject(name: string, env: NodeJS.ProcessEnv, host = a, address = 'prod') {
  const root = host.root(name)
  const p = await project({
    hosts: [host],
    root,
    envExtra: env,
    config: c => ({
      ...c,
      hosts: [{ address }],
      // two handshakes through a bastion: room for a busy machine
      ssh: { connect_retries: 0, connect_timeout: '30s' },
      verify: {
        http: { ...((c.verify as Record<string, unknown>).http as object), retries: 6, interval: '250ms' }
      }
    })
  })
  // only what the home gives: the variables the default project sets are not there
  delete p.env.SSH_KEY
  delete p.env.KNOWN_HOSTS
  pidFiles.push(join(root, 'shared', 'app.pid'))
  return { p, root }
}

/** Every file the run left on the runner (log, report), read as text. */
function runnerFiles(dir: string): string {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter(e => e.isFile())
    .map(e => readFileSync(join(e.parentPath, e.name), 'utf8'))
    .join('\n')
}

const keyBody = (key: string) =>
  key
    .split('\n')
    .filter(l => l && !l.startsWith('-----'))
    .join('')

describe('ssh from ~/.ssh', () => {
  test('key in the ssh-agent, host keys from ~/.ssh/known_hosts, HostName/Port/User from a ~/.ssh/config alias: deploys', async () => {
    const sock = await agentWith([a.privateKeyFile])
    const home = homeWith({ known_hosts: `${a.knownHostsLine}\n`, config: aliasConfig(a) })
    const { p, root } = await homeProject('home-ok', { HOME: home, SSH_AUTH_SOCK: sock })
    p.app({ version: '1.0.0' })
    const r = await p.deploy()
    expect(r.code).toBe(0)
    const release = releasesOf(root)
    expect(release).toHaveLength(1)
    expect(currentOf(root)).toBe(`releases/${release[0]}`)
    const line = `ssh: key from the SSH agent (SSH_AUTH_SOCK), host keys from ~/.ssh/known_hosts, root@${a.address}:${a.port} via ~/.ssh/config alias prod`
    const log = lastLog(p.logDir)
    expect(log).toContain(line)
    // doctor says the same
    const doctor = await p.run(['doctor'])
    expect(doctor.stdout + doctor.stderr).toContain(line)
    // the private key never reaches the output, the log or the report
    const body = keyBody(a.privateKey)
    for (const text of [r.stdout, r.stderr, doctor.stdout, doctor.stderr, runnerFiles(p.dir)])
      expect(text).not.toContain(body.slice(0, 40))
  })

  test('the Action on a runner whose ssh-agent step set SSH_AUTH_SOCK (no private-key input) deploys', async () => {
    const sock = await agentWith([a.privateKeyFile])
    const root = a.root('home-action')
    const p = await project({
      hosts: [a],
      root,
      config: c => ({ ...c, ssh: { connect_retries: 0 } }),
      // a runner's home without ~/.ssh: the host keys come from the known-hosts input
      envExtra: { HOME: homeWith({}), SSH_AUTH_SOCK: sock }
    })
    delete p.env.SSH_KEY
    pidFiles.push(join(root, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    const step = actionStep(p, 'agent', { 'INPUT_KNOWN-HOSTS': a.knownHostsLine })
    const r = await spawnActionSource('index', step.env, p.dir).exited
    expectExit(r, 0)
    expect(r.stdout).toContain('ssh: key from the SSH agent (SSH_AUTH_SOCK), host keys from ssh.known_hosts')
    const release = releasesOf(root)
    expect(currentOf(root)).toBe(`releases/${release[0]}`)
  })

  test('no agent: the default identity file ~/.ssh/id_ed25519 deploys; its text never reaches the log or the report', async () => {
    const home = homeWith({
      known_hosts: `${a.knownHostsLine}\n`,
      config: aliasConfig(a),
      id_ed25519: a.privateKey
    })
    const { p, root } = await homeProject('home-idfile', { HOME: home })
    p.app({ version: '1.0.0' })
    const r = await p.deploy()
    expect(r.code).toBe(0)
    expect(currentOf(root)).toBe(`releases/${releasesOf(root)[0]}`)
    expect(lastLog(p.logDir)).toContain('ssh: key from ~/.ssh/id_ed25519, host keys from ~/.ssh/known_hosts')
    const body = keyBody(a.privateKey)
    for (const text of [r.stdout, r.stderr, runnerFiles(p.logDir)])
      expect(text).not.toContain(body.slice(0, 40))
  })

  test('an agent holding a wrong key: exit 3, nothing changed, the error names the agent and its keys', async () => {
    const other = join(tempDir('safe-deploy-otherkey-'), 'id_ed25519')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other])
    const sock = await agentWith([other])
    const home = homeWith({ known_hosts: `${a.knownHostsLine}\n`, config: aliasConfig(a) })
    const { p, root } = await homeProject('home-wrongkey', { HOME: home, SSH_AUTH_SOCK: sock })
    p.app({ version: '1.0.0' })
    const r = await p.deploy()
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('root@prod refused the 1 key offered by the SSH agent (SSH_AUTH_SOCK)')
    expect(r.stderr).toContain('ssh-add')
    expect(existsSync(join(root, 'releases'))).toBe(false)
    expect(existsSync(join(root, '.safe-deploy'))).toBe(false)
  })

  test("the alias's User is the one that logs in", async () => {
    const sock = await agentWith([a.privateKeyFile])
    const home = homeWith({ known_hosts: `${a.knownHostsLine}\n`, config: aliasConfig(a, 'nosuchuser') })
    const { p, root } = await homeProject('home-user', { HOME: home, SSH_AUTH_SOCK: sock })
    p.app({ version: '1.0.0' })
    const r = await p.deploy()
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('nosuchuser@prod refused')
    expect(existsSync(join(root, 'releases'))).toBe(false)
  })

  test('no agent and no key anywhere: exit 2, listing every place looked at', async () => {
    const home = homeWith({ known_hosts: `${a.knownHostsLine}\n`, config: aliasConfig(a) })
    const { p, root } = await homeProject('home-nokey', { HOME: home })
    p.app({ version: '1.0.0' })
    const r = await p.deploy()
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('ssh.private_key: required for SSH hosts')
    for (const place of [
      'the SSH agent (SSH_AUTH_SOCK is not set)',
      '~/.ssh/id_ed25519 (not found)',
      '~/.ssh/id_ecdsa (not found)',
      '~/.ssh/id_rsa (not found)'
    ])
      expect(r.stderr).toContain(place)
    expect(existsSync(join(root, 'releases'))).toBe(false)
  })

  test('~/.ssh/known_hosts with a wrong key for the host: refused (exit 3), nothing changed', async () => {
    const sock = await agentWith([a.privateKeyFile])
    // b's host key under a's name
    const wrong = b.knownHostsLine.replace(`[${b.address}]`, `[${a.address}]`)
    const home = homeWith({ known_hosts: `${wrong}\n`, config: aliasConfig(a) })
    const { p, root } = await homeProject('home-wrongkh', { HOME: home, SSH_AUTH_SOCK: sock })
    p.app({ version: '1.0.0' })
    const r = await p.deploy()
    expect(r.code).toBe(3)
    expect(r.stderr).toContain(`host key for ${a.address}:${a.port} does not match known_hosts`)
    expect(r.stderr).toContain(a.hostKeyFingerprint)
    expect(existsSync(join(root, 'releases'))).toBe(false)
    expect(existsSync(join(root, '.safe-deploy'))).toBe(false)
  })
})

describe('ProxyJump of a ~/.ssh/config alias', () => {
  let net: JumpNetwork
  let bastion: SshHost
  let target: SshHost

  beforeAll(async () => {
    ;({ net, bastion, target } = await startJumpHosts())
  })

  afterAll(async () => {
    for (const f of pidFiles) await stopApp(f)
    await stopAll()
    net?.remove()
  })

  test('one hop, itself an alias: the target (reachable only from the bastion) deploys through it', async () => {
    // each its own key, both in the agent
    const sock = await agentWith([bastion.privateKeyFile, target.privateKeyFile])
    const home = homeWith({
      known_hosts: `${bastion.knownHostsLine}\n${target.knownHostsLine}\n`,
      config: [
        'Host web',
        `  HostName ${target.address}`,
        `  Port ${target.port}`,
        '  ProxyJump gate',
        'Host gate',
        `  HostName ${bastion.address}`,
        `  Port ${bastion.port}`,
        '  User root',
        ''
      ].join('\n')
    })
    const { p, root } = await homeProject('home-jump', { HOME: home, SSH_AUTH_SOCK: sock }, target, 'web')
    p.app({ version: '1.0.0' })
    const r = await p.deploy()
    expect(r.code).toBe(0)
    const release = releasesOf(root)
    expect(currentOf(root)).toBe(`releases/${release[0]}`)
    expect(readFileSync(target.logFile, 'utf8')).toContain(
      `Accepted publickey for root from ${net.bastionInnerAddress}`
    )
    expect(lastLog(p.logDir)).toContain(
      `root@${target.address}:${target.port} via ~/.ssh/config alias web (ProxyJump gate:${bastion.port})`
    )
  })
})
