import { describe, expect, test } from '@jest/globals'
import { validateConfig, type Overrides } from '../../../src/config/load.js'
import { ConfigError } from '../../../src/core/exit.js'

const KEY =
  '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n-----END OPENSSH PRIVATE KEY-----'

/** The fleet: web-1 (primary), web-2, worker-1, each with its own path or port. */
const fleet = () => ({
  app: 'shop',
  path: '/srv/shop',
  hosts: [
    { address: '10.0.0.11', name: 'web-1', roles: ['web'], primary: true },
    { address: '10.0.0.12', name: 'web-2', roles: ['web'], path: '/srv/web-2', port: 2202 },
    { address: '10.0.0.21', name: 'worker-1', roles: ['worker'], user: 'jobs', path: '/srv/worker' }
  ],
  ssh: { private_key: KEY, known_hosts: '10.0.0.11 ssh-ed25519 AAAA' },
  source: { dir: '.' }
})

const load = (o: Overrides, raw: Record<string, unknown> = fleet()) =>
  validateConfig(raw, '/tmp/safe-deploy.yml', o, {})

const problems = (o: Overrides, raw?: Record<string, unknown>) => {
  try {
    load(o, raw)
  } catch (e) {
    if (e instanceof ConfigError) return e.problems
    throw e
  }
  return []
}

describe('--hosts and --roles select hosts of the config', () => {
  test('--roles: the hosts with any of the roles, in config order, each with its own settings', () => {
    const l = load({ roles: 'worker' })
    expect(l.hosts.map(h => [h.name, h.path, h.user, h.port, h.roles])).toEqual([
      ['worker-1', '/srv/worker', 'jobs', 22, ['worker']]
    ])
    expect(load({ roles: 'worker, web' }).hosts.map(h => h.name)).toEqual(['web-1', 'web-2', 'worker-1'])
  })

  test('--hosts is --host under its fleet name: by name, address or address:port', () => {
    expect(load({ hosts: '10.0.0.12:2202,worker-1' }).hosts.map(h => [h.name, h.path])).toEqual([
      ['web-2', '/srv/web-2'],
      ['worker-1', '/srv/worker']
    ])
    expect(problems({ hosts: 'web-1', host: 'web-2' })).toEqual([
      '--host and --hosts: give one (--host is another name for --hosts)'
    ])
  })

  test('both given: the hosts that match both (the intersection); none is a config error', () => {
    expect(load({ hosts: 'web-2,worker-1', roles: 'web' }).hosts.map(h => h.name)).toEqual(['web-2'])
    expect(problems({ hosts: 'web-1', roles: 'worker' })).toEqual([
      '--hosts and --roles: no host is both in "web-1" and has a role of worker; the hosts with those roles are worker-1 (10.0.0.21)'
    ])
  })

  test('an unknown host or role is a config error (exit 2) listing the known ones', () => {
    expect(problems({ hosts: 'web-9' })).toEqual([
      '--hosts: "web-9" is not a host of this config; it has web-1 (10.0.0.11), web-2 (10.0.0.12), worker-1 (10.0.0.21) (add a host to hosts: to deploy to it)'
    ])
    expect(problems({ roles: 'web,db,cache' })).toEqual([
      '--roles: "db", "cache" are not a role of any host of this config; the roles are web, worker'
    ])
    expect(problems({ roles: ' , ' })).toEqual(["--roles: expected a role from the config's hosts[].roles"])
  })

  test("the lock stays on the config's primary when the selection leaves it out; the first selected runs what runs once", () => {
    const l = load({ roles: 'worker' })
    expect(l.lockHost).toMatchObject({ name: 'web-1', address: '10.0.0.11', path: '/srv/shop' })
    expect(l.hosts.map(h => [h.name, h.primary])).toEqual([['worker-1', true]])
    // selected: no separate lock host
    expect(load({ hosts: 'web-1,worker-1' }).lockHost).toBeUndefined()
    expect(load({}).lockHost).toBeUndefined()
    // without `primary: true` the first host of the config is the primary, and holds the lock
    const raw = fleet()
    delete (raw.hosts[0] as { primary?: boolean }).primary
    expect(load({ hosts: 'web-2' }, raw).lockHost?.name).toBe('web-1')
  })

  test('--skip-unreachable is carried on the loaded config', () => {
    expect(load({ skipUnreachable: true }).skipUnreachable).toBe(true)
    expect(load({}).skipUnreachable).toBeUndefined()
  })
})

describe('the Action inputs hosts, roles, skip-unreachable', () => {
  test('become the same overrides as the CLI flags; skip-unreachable is for deploy only', async () => {
    const { parseInputs } = await import('../../../src/platform/inputs.js')
    const from = (v: Record<string, string>) => (name: string) => v[name] ?? ''
    expect(
      parseInputs(from({ hosts: 'web-1', roles: 'web', 'skip-unreachable': 'true' })).overrides
    ).toMatchObject({ hosts: 'web-1', roles: 'web', skipUnreachable: true })
    expect(() => parseInputs(from({ command: 'rollback', 'skip-unreachable': 'true' }))).toThrow(
      'input skip-unreachable: only for command deploy, not rollback'
    )
  })
})
