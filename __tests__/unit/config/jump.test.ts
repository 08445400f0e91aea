import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { validateConfig } from '../../../src/config/load.js'
import { ConfigError } from '../../../src/core/exit.js'
import { cleanup, tempDir } from '../helpers/shell.js'

const KEY =
  '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n-----END OPENSSH PRIVATE KEY-----'
const JUMP_KEY =
  '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAbastionkeybodyAAAA\n-----END OPENSSH PRIVATE KEY-----'

let dir: string
beforeAll(() => {
  dir = tempDir('jump-config')
})
afterAll(() => cleanup(dir))

function config(jump: unknown): Record<string, unknown> {
  return {
    app: 'shop',
    path: '/srv/shop',
    hosts: [{ address: '10.0.0.11', name: 'web-1' }],
    ssh: { private_key: 'env:SSH_KEY', known_hosts: 'env:KNOWN_HOSTS', jump }
  }
}

const env = { SSH_KEY: KEY, KNOWN_HOSTS: 'bastion.example.org ssh-ed25519 AAAA', JUMP_KEY }
const load = (jump: unknown) => validateConfig(config(jump), join(dir, 'safe-deploy.yml'), {}, env)

function problemsOf(jump: unknown): string[] {
  try {
    load(jump)
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    return (e as ConfigError).problems
  }
  throw new Error('expected the config to be invalid')
}

describe('ssh.jump', () => {
  test('port 22 and user root by default; the hosts’ key unless it has its own', () => {
    const l = load({ address: 'bastion.example.org' })
    expect(l.auth.jump).toEqual({
      label: 'bastion.example.org',
      address: 'bastion.example.org',
      port: 22,
      user: 'root',
      privateKey: undefined,
      passphrase: undefined
    })
    expect(l.config.ssh.jump).toEqual({ address: 'bastion.example.org', port: 22, user: 'root' })
  })

  test('a port other than 22 is part of the label; its own key is a secret', () => {
    const l = load({ address: '192.0.2.9', port: 2200, user: 'deploy', private_key: 'env:JUMP_KEY' })
    expect(l.auth.jump).toMatchObject({ label: '192.0.2.9:2200', user: 'deploy', privateKey: JUMP_KEY })
    expect(l.secrets).toContain(JUMP_KEY)
    expect(l.secrets).toContain(KEY)
  })

  test('private_key_file is read relative to the config', () => {
    writeFileSync(join(dir, 'bastion_key'), JUMP_KEY)
    const l = load({ address: 'bastion.example.org', private_key_file: 'bastion_key' })
    expect(l.auth.jump?.privateKey).toBe(JUMP_KEY)
    expect(l.secrets).toContain(JUMP_KEY)
  })

  test('problems name the key', () => {
    expect(problemsOf({ address: 'b', private_key: 'env:JUMP_KEY', private_key_file: 'k' })).toContain(
      'ssh.jump: give private_key or private_key_file, not both'
    )
    expect(problemsOf({ address: 'b', private_key: 'not a key' })).toContain(
      'ssh.jump.private_key: expected a PEM/OpenSSH private key (-----BEGIN ... PRIVATE KEY-----)'
    )
    expect(problemsOf({ address: 'b', passphrase: 'secret-phrase' })).toContain(
      "ssh.jump.passphrase: only with ssh.jump.private_key (the hosts' key has ssh.passphrase)"
    )
    expect(problemsOf({ port: 22 }).join('\n')).toMatch(/ssh\.jump\.address/)
    expect(problemsOf({ address: 'b', proxy: 'x' }).join('\n')).toMatch(/ssh\.jump.*proxy/)
    expect(problemsOf({ address: 'b', private_key_file: 'missing' }).join('\n')).toMatch(
      /^ssh\.jump\.private_key_file: cannot read .*missing: ENOENT$/m
    )
  })
})
