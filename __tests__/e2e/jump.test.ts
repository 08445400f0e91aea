/**
 * Jump hosts (ssh.jump, ProxyJump) against real sshds: a bastion and a target, each in its own network
 * namespace (harness/netns.ts). The target's sshd listens on an address only the bastion's namespace can
 * reach (veth pairs test ↔ bastion ↔ target, no forwarding in the bastion's namespace), so a deploy that
 * reaches the target went through the bastion. No firewall rules. "Not reachable directly" is checked by the
 * SSH banner, not by a TCP connect: this container's own network accepts every outgoing TCP connection.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { parse, stringify } from 'yaml'
import { join } from 'node:path'
import { waitFor } from './harness/app.js'
import { SshTransport } from '../../src/transport/ssh.js'
import { startJumpHosts, type JumpNetwork } from './harness/netns.js'
import { bannerOf, fastShell, startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { currentOf, lockExists, project, releasesOf, stopApp, type Project } from './support.js'

let net: JumpNetwork
let bastion: SshHost
let target: SshHost
const pidFiles: string[] = []

beforeAll(async () => {
  ;({ net, bastion, target } = await startJumpHosts())
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  await stopAll()
  net?.remove()
})

/** The bastion lets in the target's client key too (the default: one key for the bastion and the hosts). */
function authorizeTargetKeyOnBastion(): void {
  const keys = join(bastion.dir, 'etc', 'authorized_keys')
  const targetKey = readFileSync(`${target.privateKeyFile}.pub`, 'utf8')
  if (!readFileSync(keys, 'utf8').includes(targetKey)) writeFileSync(keys, targetKey, { flag: 'a' })
}

async function jumpProject(
  root: string,
  opts: { jump?: Record<string, unknown>; knownHosts?: string } = {}
): Promise<Project> {
  const p = await project({
    hosts: [target],
    root,
    config: c => ({
      ...c,
      hosts: [{ name: 'web-1', address: target.address, port: target.port, user: 'root' }],
      ssh: {
        ...(c.ssh as object),
        // two handshakes (bastion, then the host through it): room for a machine busy with other suites
        connect_timeout: '30s',
        jump: { address: bastion.address, port: bastion.port, user: 'root', ...opts.jump }
      }
    }),
    envExtra: {
      KNOWN_HOSTS: opts.knownHosts ?? `${bastion.knownHostsLine}\n${target.knownHostsLine}`,
      JUMP_KEY: bastion.privateKey
    }
  })
  pidFiles.push(`${root}/shared/app.pid`)
  return p
}

/** A known_hosts line for `host` with another host's key: what a reinstalled (or impersonated) server offers. */
function wrongKeyLine(host: SshHost, other: SshHost): string {
  const [, type, key] = other.knownHostsLine.split(' ')
  return `${host.knownHostsLine.split(' ')[0]} ${type} ${key}`
}

describe('ssh.jump', () => {
  test('the target is not reachable directly, only through the bastion', async () => {
    // (this container's network accepts any TCP connection on its way out: only a banner tells an sshd)
    expect(await bannerOf(bastion.address, bastion.port)).toMatch(/^SSH-2\.0/)
    expect(await bannerOf(target.address, target.port)).toBe('')
    expect(await bannerOf(target.address, target.port, 2000, net.bastionNs)).toMatch(/^SSH-2\.0/)
    // and a deploy without ssh.jump cannot connect
    const root = target.root('jump-direct')
    const p = await project({
      hosts: [target],
      root,
      config: c => ({ ...c, ssh: { ...(c.ssh as object), connect_timeout: '2s', connect_retries: 0 } })
    })
    p.app({ version: 'v1' })
    const d = await p.deploy()
    expect(d.code).toBe(3)
    expect(d.stderr).toContain(`cannot connect to ${target.address}`)
    expect(releasesOf(root)).toEqual([])
  })

  test('a deploy through the jump host switches the target; status works through it too', async () => {
    authorizeTargetKeyOnBastion()
    const root = target.root('jump-deploy')
    const p = await jumpProject(root)
    p.app({ version: 'v1' })
    const d = await p.deploy()
    expect(d.stderr).not.toMatch(/error/i)
    expect(d.code).toBe(0)
    const release = releasesOf(root)
    expect(release).toHaveLength(1)
    expect(currentOf(root)).toBe(`releases/${release[0]}`)
    expect(lockExists(root)).toBe(false)
    // the target saw the connection come from the bastion's inner address
    expect(readFileSync(target.logFile, 'utf8')).toContain(
      `Accepted publickey for root from ${net.bastionInnerAddress}`
    )

    const s = await p.run(['status'])
    expect(s.code).toBe(0)
    expect(s.stdout + s.stderr).toContain(release[0])
    const plan = await p.run(['plan'])
    expect(plan.code).toBe(0)
    expect(plan.stdout).toContain(
      `## every SSH host is reached through the jump host ${bastion.address}:${bastion.port}`
    )
  })

  test('two hosts share one bastion connection, closed when the run ends', async () => {
    authorizeTargetKeyOnBastion()
    const second = await startSshd({ netns: net.targetNs, address: net.targetAddress, port: target.port + 1 })
    // one client key for both hosts (and the bastion), as ssh.private_key is one key
    writeFileSync(join(second.dir, 'etc', 'authorized_keys'), readFileSync(`${target.privateKeyFile}.pub`))
    const roots = [target.root('jump-two-a'), second.root('jump-two-b')]
    for (const r of roots) mkdirSync(join(r, 'shared'), { recursive: true })
    for (const r of roots) writeFileSync(join(r, 'shared', '.env'), 'SECRET=from-shared\n')
    const p = await project({
      hosts: [target],
      root: roots[0] as string,
      config: c => ({
        ...c,
        hosts: [
          { name: 'web-1', address: target.address, port: target.port, path: roots[0] },
          { name: 'web-2', address: second.address, port: second.port, path: roots[1] }
        ],
        ssh: { ...(c.ssh as object), jump: { address: bastion.address, port: bastion.port } },
        // no app server: two on one namespace's loopback would share a port
        stages: { build: 'echo built > BUILD_OK', restart: 'true' },
        verify: { command: 'test -f BUILD_OK' }
      }),
      envExtra: {
        KNOWN_HOSTS: [bastion, target, second].map(h => h.knownHostsLine).join('\n')
      }
    })
    p.app({ version: 'v1' })
    const before = readFileSync(bastion.logFile, 'utf8').length
    const d = await p.deploy()
    expect(d.code).toBe(0)
    for (const r of roots) expect(currentOf(r)).toBe(`releases/${releasesOf(r)[0]}`)
    const bastionLog = () => readFileSync(bastion.logFile, 'utf8').slice(before)
    expect(bastionLog().match(/Accepted publickey for root/g)).toHaveLength(1)
    await waitFor('the bastion connection to close', () => /Disconnected from user root/.test(bastionLog()))
    await second.stop()
  })

  test('ssh.jump.private_key: the bastion takes its own key', async () => {
    const root = target.root('jump-own-key')
    const p = await jumpProject(root, { jump: { private_key: 'env:JUMP_KEY' } })
    p.app({ version: 'v1' })
    const d = await p.deploy()
    expect(d.code).toBe(0)
    expect(currentOf(root)).toBe(`releases/${releasesOf(root)[0]}`)
    // the bastion key is a secret like the hosts' key: never in the log
    expect(d.stdout + d.stderr).not.toContain(bastion.privateKey.split('\n')[1])
  })

  test('a wrong bastion host key stops the run before anything changes, naming the bastion', async () => {
    authorizeTargetKeyOnBastion()
    const root = target.root('jump-bad-bastion-key')
    const p = await jumpProject(root, {
      knownHosts: `${wrongKeyLine(bastion, target)}\n${target.knownHostsLine}`
    })
    p.app({ version: 'v1' })
    const targetLog = readFileSync(target.logFile, 'utf8').length
    const d = await p.deploy()
    expect(d.code).toBe(3)
    expect(d.stderr).toContain(`web-1 via ${bastion.address}:${bastion.port}: jump host:`)
    expect(d.stderr).toContain(`host key for ${bastion.address}:${bastion.port} does not match known_hosts`)
    expect(releasesOf(root)).toEqual([])
    expect(currentOf(root)).toBeUndefined()
    expect(lockExists(root)).toBe(false)
    // the target was never contacted
    expect(readFileSync(target.logFile, 'utf8').slice(targetLog)).not.toContain('Connection from')
  })

  test('a wrong target host key fails naming the target (and the bastion it went through)', async () => {
    authorizeTargetKeyOnBastion()
    const root = target.root('jump-bad-target-key')
    const p = await jumpProject(root, {
      knownHosts: `${bastion.knownHostsLine}\n${wrongKeyLine(target, bastion)}`
    })
    p.app({ version: 'v1' })
    const d = await p.deploy()
    expect(d.code).toBe(3)
    expect(d.stderr).toContain(
      `web-1 via ${bastion.address}:${bastion.port}: host key for ${target.address}:${target.port} does not match known_hosts`
    )
    expect(releasesOf(root)).toEqual([])
    expect(currentOf(root)).toBeUndefined()
  })
  test('without --skip-unreachable a host the bastion cannot reach stops the run; with it, the others deploy', async () => {
    authorizeTargetKeyOnBastion()
    const root = target.root('jump-skip')
    const goneRoot = target.root('jump-skip-gone')
    // web-2: the target's address, a port nothing listens on: the bastion's connection to it is refused
    const p = await jumpProject(root)
    const config = parse(readFileSync(p.configFile, 'utf8')) as Record<string, unknown>
    config.hosts = [
      { name: 'web-1', address: target.address, port: target.port, primary: true },
      { name: 'web-2', address: target.address, port: target.port + 50, path: goneRoot }
    ]
    writeFileSync(p.configFile, stringify(config))
    p.app({ version: 'v1' })
    const stopped = await p.deploy()
    expect(stopped.code).toBe(3)
    expect(stopped.stderr).toContain(
      `web-2 via ${bastion.address}:${bastion.port}: ${bastion.address}:${bastion.port} cannot open a connection to ${target.address}:${target.port + 50}`
    )
    expect(releasesOf(root)).toEqual([])
    const d = await p.deploy(['--skip-unreachable'])
    expect(d.code).toBe(0)
    expect(d.stderr).toMatch(/WARNING: SKIPPED web-2 \(unreachable, --skip-unreachable\)/)
    expect(currentOf(root)).toBe(`releases/${releasesOf(root)[0]}`)
    expect(releasesOf(goneRoot)).toEqual([])
  })

  test('insecure_skip_host_key_check covers the bastion too, and says so', async () => {
    authorizeTargetKeyOnBastion()
    const root = target.root('jump-insecure')
    const p = await project({
      hosts: [target],
      root,
      config: c => ({
        ...c,
        hosts: [{ name: 'web-1', address: target.address, port: target.port }],
        ssh: {
          private_key: 'env:SSH_KEY',
          insecure_skip_host_key_check: true,
          connect_retries: 1,
          jump: { address: bastion.address, port: bastion.port }
        }
      })
    })
    pidFiles.push(`${root}/shared/app.pid`)
    p.app({ version: 'v1' })
    const d = await p.deploy()
    expect(d.code).toBe(0)
    expect(d.stderr).toContain(
      'WARNING: ssh.insecure_skip_host_key_check is true: host keys are NOT verified'
    )
    expect(currentOf(root)).toBe(`releases/${releasesOf(root)[0]}`)
  })

  test('a dropped bastion connection is opened again before the next command', async () => {
    authorizeTargetKeyOnBastion()
    const reconnects: string[] = []
    const t = await SshTransport.connect({
      label: 'web-1',
      address: target.address,
      port: target.port,
      user: 'root',
      privateKey: target.privateKey,
      knownHosts: `${bastion.knownHostsLine}\n${target.knownHostsLine}`,
      fingerprints: [],
      insecureSkipHostKeyCheck: false,
      connectTimeoutMs: 5000,
      connectRetries: 1,
      keepaliveIntervalMs: 1000,
      jump: { label: 'bastion', address: bastion.address, port: bastion.port, user: 'root' },
      onReconnect: () => reconnects.push('web-1')
    })
    try {
      expect(await t.exec('echo one')).toEqual({ code: 0, stdout: 'one\n', stderr: '' })
      const before = readFileSync(bastion.logFile, 'utf8').length
      bastion.dropSessions()
      await waitFor('the bastion session to end', () =>
        /Exiting on signal|Disconnected from|Connection closed/.test(
          readFileSync(bastion.logFile, 'utf8').slice(before)
        )
      )
      // the target connection inside the dropped one is gone too; the next command opens both again
      expect(await t.exec('echo two')).toEqual({ code: 0, stdout: 'two\n', stderr: '' })
      expect(reconnects).toEqual(['web-1'])
      expect(readFileSync(bastion.logFile, 'utf8').slice(before)).toContain('Accepted publickey for root')
    } finally {
      await t.close()
    }
  })

  test('a bastion that does not forward (AllowTcpForwarding no): exit 3, the bastion and the host named', async () => {
    const closed = await startSshd({
      netns: net.bastionNs,
      address: net.bastionAddress,
      port: bastion.port + 1,
      extraConfig: [...fastShell(), 'AllowTcpForwarding no']
    })
    writeFileSync(join(closed.dir, 'etc', 'authorized_keys'), readFileSync(`${target.privateKeyFile}.pub`))
    const root = target.root('jump-no-forwarding')
    const p = await jumpProject(root, {
      jump: { port: closed.port },
      knownHosts: `${closed.knownHostsLine}\n${target.knownHostsLine}`
    })
    p.app({ version: 'v1' })
    const d = await p.deploy()
    expect(d.code).toBe(3)
    expect(d.stderr).toContain(
      `web-1 via ${closed.address}:${closed.port}: ${closed.address}:${closed.port} cannot open a connection to ${target.address}:${target.port}`
    )
    expect(releasesOf(root)).toEqual([])
    expect(currentOf(root)).toBeUndefined()
    await closed.stop()
  })

  test('the bastion down: the run stops before anything changes, naming the bastion', async () => {
    authorizeTargetKeyOnBastion()
    const root = target.root('jump-bastion-down')
    const p = await jumpProject(root)
    p.app({ version: 'v1' })
    await bastion.stop({ killSessions: true })
    const d = await p.deploy()
    expect(d.code).toBe(3)
    expect(d.stderr).toContain(
      `web-1 via ${bastion.address}:${bastion.port}: jump host: cannot connect to ${bastion.address}:${bastion.port}`
    )
    expect(releasesOf(root)).toEqual([])
    expect(currentOf(root)).toBeUndefined()
  })
})
