import { describe, expect, test } from '@jest/globals'
import { ConfigError } from '../../../src/core/exit.js'
import { parseInputs } from '../../../src/platform/inputs.js'

const from = (values: Record<string, string>) => (name: string) => values[name] ?? ''

describe('parseInputs', () => {
  test('defaults: deploy with safe-deploy.yml, no overrides', () => {
    expect(parseInputs(from({}))).toEqual({
      command: 'deploy',
      config: 'safe-deploy.yml',
      overrides: {
        host: undefined,
        port: undefined,
        user: undefined,
        path: undefined,
        privateKey: undefined,
        knownHosts: undefined
      },
      to: undefined,
      restore: undefined,
      noDb: false,
      yes: false,
      dryRun: false,
      verbose: false
    })
  })

  test('every input is read', () => {
    const key = '-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----'
    const inputs = parseInputs(
      from({
        command: 'rollback',
        config: 'deploy/prod.yml',
        to: '20261121T193000Z-3f2a1c9',
        host: 'a,b',
        port: '2222',
        user: 'deploy',
        path: '/srv/x',
        'private-key': key,
        'known-hosts': 'a ssh-ed25519 AAAA',
        restore: 'shop_20261121_193000',
        yes: 'true',
        'dry-run': 'true',
        verbose: 'true'
      })
    )
    expect(inputs).toEqual({
      command: 'rollback',
      config: 'deploy/prod.yml',
      overrides: {
        host: 'a,b',
        port: 2222,
        user: 'deploy',
        path: '/srv/x',
        privateKey: key,
        knownHosts: 'a ssh-ed25519 AAAA'
      },
      to: '20261121T193000Z-3f2a1c9',
      restore: 'shop_20261121_193000',
      noDb: false,
      yes: true,
      dryRun: true,
      verbose: true
    })
  })

  test('restore and no-db together are refused', () => {
    expect(() =>
      parseInputs(from({ command: 'rollback', restore: 'shop_20261121_193000', 'no-db': 'true' }))
    ).toThrow('inputs restore and no-db: give one, not both')
  })

  test.each(['deploy', 'rollback', 'backup', 'status', 'releases', 'plan'])(
    'command %s is accepted',
    command => {
      expect(parseInputs(from({ command })).command).toBe(command)
    }
  )

  test('an unknown command is a ConfigError listing the known ones', () => {
    expect(() => parseInputs(from({ command: 'destroy' }))).toThrow(ConfigError)
    expect(() => parseInputs(from({ command: 'destroy' }))).toThrow(
      'input command: expected one of deploy, rollback, backup, status, releases, plan, got "destroy"'
    )
  })

  test.each(['0', '65536', 'abc', '22.5', '-1'])('port %j is refused', port => {
    expect(() => parseInputs(from({ port }))).toThrow(
      `input port: expected a port number 1-65535, got ${JSON.stringify(port)}`
    )
  })

  test('ports at the edges are accepted', () => {
    expect(parseInputs(from({ port: '1' })).overrides.port).toBe(1)
    expect(parseInputs(from({ port: '65535' })).overrides.port).toBe(65535)
  })

  test('a bad `to` fails with the expected form', () => {
    expect(() => parseInputs(from({ command: 'rollback', to: 'last-week' }))).toThrow(
      'input to "last-week" is not a release name; expected the form 20261121T193000Z-3f2a1c9'
    )
  })

  test.each([
    ['true', true],
    ['TRUE', true],
    ['1', true],
    ['yes', true],
    ['false', false],
    ['0', false],
    ['', false],
    ['y', false]
  ])('verbose %j is %s', (verbose, expected) => {
    expect(parseInputs(from({ verbose })).verbose).toBe(expected)
  })
})
