/**
 * The jump host's retry logic against a real TCP listener that hangs up at once (no SSH spoken): hosts that
 * share a JumpTarget share its connection attempts, and a host does not retry a bastion whose own retries
 * are spent. (Everything that speaks SSH is in __tests__/e2e/jump.test.ts, against real sshds.)
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { SshTransport, type JumpTarget, type SshTarget } from '../../../src/transport/ssh.js'

let server: net.Server
let port = 0
let connections = 0
let dir = ''
let key = ''

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jump-unit-'))
  execFileSync('/usr/bin/ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')])
  key = readFileSync(join(dir, 'id'), 'utf8')
  server = net.createServer(socket => {
    connections++
    socket.destroy()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as net.AddressInfo).port
})
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  await new Promise<void>(resolve => server.close(() => resolve()))
})

function target(label: string, jump: JumpTarget, retries: string[]): SshTarget {
  return {
    label,
    address: '10.255.0.1',
    port: 22,
    user: 'deploy',
    privateKey: key,
    knownHosts: '',
    fingerprints: [],
    insecureSkipHostKeyCheck: false,
    connectTimeoutMs: 2000,
    connectRetries: 1,
    keepaliveIntervalMs: 1000,
    jump,
    onRetry: (attempt, _delay, e) => retries.push(`${label} ${attempt}: ${e.message}`)
  }
}

describe('ssh.jump: connection attempts', () => {
  test('two hosts on one bastion: one series of attempts (connect_retries + 1), both fail naming both ends', async () => {
    connections = 0
    const jump: JumpTarget = { label: 'bastion', address: '127.0.0.1', port, user: 'deploy' }
    const retries: string[] = []
    const results = await Promise.allSettled([
      SshTransport.connect(target('web-1', jump, retries)),
      SshTransport.connect(target('web-2', jump, retries))
    ])
    expect(results.map(r => r.status)).toEqual(['rejected', 'rejected'])
    const messages = results.map(r => String((r as PromiseRejectedResult).reason.message))
    expect(messages[0]).toMatch(/^web-1 via bastion: jump host: cannot connect to bastion: /)
    expect(messages[1]).toMatch(/^web-2 via bastion: jump host: cannot connect to bastion: /)
    // connect_retries: 1 -> two attempts at the bastion, shared: not two per host, not retried again per host
    expect(connections).toBe(2)
    expect(retries).toHaveLength(1)
    expect(retries[0]).toMatch(/^web-1 1: jump host: cannot connect to bastion: /)
  })

  test('after the last host gave up, the next connect tries the bastion afresh', async () => {
    connections = 0
    const jump: JumpTarget = { label: 'bastion', address: '127.0.0.1', port, user: 'deploy' }
    const retries: string[] = []
    await expect(SshTransport.connect(target('web-1', jump, retries))).rejects.toThrow(/jump host/)
    await expect(SshTransport.connect(target('web-1', jump, retries))).rejects.toThrow(/jump host/)
    expect(connections).toBe(4)
  })
})
