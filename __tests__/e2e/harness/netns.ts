/**
 * Network namespaces for the jump host tests: the test's own namespace ↔ a bastion namespace ↔ a target
 * namespace, joined by two veth pairs. The bastion's namespace does not forward packets (ip_forward 0) and the
 * test's namespace has no route to the target's subnet, so only a process inside the bastion's namespace (its
 * sshd) can reach the target: no firewall rules involved. sshd runs inside with `startSshd({ netns })`.
 *
 * Names and subnets come from this process's pid, so parallel jest workers do not collide. Needs root and a
 * kernel that lets this container create namespaces (`ip netns add`).
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { fastShell, startSshd, type SshHost } from './sshd.js'

export interface JumpNetwork {
  /** Namespace for the bastion's sshd. */
  bastionNs: string
  /** The bastion's address, reachable from the test's namespace. */
  bastionAddress: string
  /** Namespace for the target's sshd. */
  targetNs: string
  /** The target's address, reachable only from the bastion's namespace. */
  targetAddress: string
  /** The bastion's address on the target's side (where the target sees connections come from). */
  bastionInnerAddress: string
  /** Deletes both namespaces (and with them the veth pairs); stop the sshds in them first. */
  remove(): void
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] })
}

/** Whether this machine lets us create a network namespace (for a clear skip message). */
export function canCreateNetns(): boolean {
  const name = `sdprobe${process.pid}`
  const ok = spawnSync('ip', ['netns', 'add', name], { stdio: 'ignore' }).status === 0
  if (ok) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' })
  return ok
}

export function createJumpNetwork(): JumpNetwork {
  const id = process.pid
  const x = (id >> 6) & 255
  const y = (id & 63) * 4
  const bastionNs = `sdj${id}b`
  const targetNs = `sdj${id}t`
  const outer = { test: `10.201.${x}.${y + 1}`, bastion: `10.201.${x}.${y + 2}` }
  const inner = { bastion: `10.202.${x}.${y + 1}`, target: `10.202.${x}.${y + 2}` }
  const remove = (): void => {
    for (const ns of [bastionNs, targetNs]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
    spawnSync('ip', ['link', 'del', `vjr${id}`], { stdio: 'ignore' })
  }
  remove()
  try {
    ip('netns', 'add', bastionNs)
    ip('netns', 'add', targetNs)
    // test ↔ bastion
    ip('link', 'add', `vjr${id}`, 'type', 'veth', 'peer', 'name', `vjb${id}`)
    ip('link', 'set', `vjb${id}`, 'netns', bastionNs)
    ip('addr', 'add', `${outer.test}/30`, 'dev', `vjr${id}`)
    ip('link', 'set', `vjr${id}`, 'up')
    ip('-n', bastionNs, 'addr', 'add', `${outer.bastion}/30`, 'dev', `vjb${id}`)
    ip('-n', bastionNs, 'link', 'set', `vjb${id}`, 'up')
    ip('-n', bastionNs, 'link', 'set', 'lo', 'up')
    // bastion ↔ target
    ip('-n', bastionNs, 'link', 'add', `vjc${id}`, 'type', 'veth', 'peer', 'name', `vjt${id}`)
    ip('-n', bastionNs, 'link', 'set', `vjt${id}`, 'netns', targetNs)
    ip('-n', bastionNs, 'addr', 'add', `${inner.bastion}/30`, 'dev', `vjc${id}`)
    ip('-n', bastionNs, 'link', 'set', `vjc${id}`, 'up')
    ip('-n', targetNs, 'addr', 'add', `${inner.target}/30`, 'dev', `vjt${id}`)
    ip('-n', targetNs, 'link', 'set', `vjt${id}`, 'up')
    // the app on the target listens on 127.0.0.1 there, and verify's curl runs there
    ip('-n', targetNs, 'link', 'set', 'lo', 'up')
    // the bastion is no router: only its own processes reach the target
    execFileSync('ip', ['netns', 'exec', bastionNs, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=0'])
  } catch (e) {
    remove()
    throw e
  }
  return {
    bastionNs,
    bastionAddress: outer.bastion,
    targetNs,
    targetAddress: inner.target,
    bastionInnerAddress: inner.bastion,
    remove
  }
}

/** A jump network with a bastion sshd and a target sshd (reachable only from the bastion) in it. */
export async function startJumpHosts(): Promise<{ net: JumpNetwork; bastion: SshHost; target: SshHost }> {
  const net = createJumpNetwork()
  const bastion = await startSshd({
    netns: net.bastionNs,
    address: net.bastionAddress,
    extraConfig: fastShell()
  })
  const target = await startSshd({
    netns: net.targetNs,
    address: net.targetAddress,
    extraConfig: fastShell()
  })
  return { net, bastion, target }
}
