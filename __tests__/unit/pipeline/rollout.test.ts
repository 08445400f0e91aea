import { rolloutBatches } from '../../../src/pipeline/rollout.js'
import { validateConfig } from '../../../src/config/load.js'
import { configForRoles } from '../../../src/config/rules.js'
import { ConfigError } from '../../../src/core/exit.js'
import { hostResultsOf, runStages } from '../../../src/pipeline/orchestrator.js'
import { StageError } from '../../../src/core/errors.js'
import { DeployLog } from '../../../src/report/log.js'
import { Redactor } from '../../../src/report/redact.js'
import { Layout } from '../../../src/commands/layout.js'
import type { HostSession, RunContext } from '../../../src/host/context.js'
import type { HostStage, StageEffect } from '../../../src/pipeline/stage.js'
import { strategyFor } from '../../../src/pipeline/switch.js'

const hosts = (n: number, primary = 0) =>
  Array.from({ length: n }, (_, i) => ({ name: `h${i + 1}`, primary: i === primary }))

describe('rolloutBatches', () => {
  test('without rollout: one batch of every host', () => {
    expect(rolloutBatches(hosts(3), undefined)).toEqual([['h1', 'h2', 'h3']])
  })

  test('a number: batches of that many, the last one what is left', () => {
    expect(rolloutBatches(hosts(5), { batch: 2, wait: 0 })).toEqual([['h1', 'h2'], ['h3', 'h4'], ['h5']])
  })

  test('a share of the hosts, rounded up, at least 1', () => {
    expect(rolloutBatches(hosts(6), { batch: '25%', wait: 0 })).toEqual([
      ['h1', 'h2'],
      ['h3', 'h4'],
      ['h5', 'h6']
    ])
    expect(rolloutBatches(hosts(3), { batch: '1%', wait: 0 })).toEqual([['h1'], ['h2'], ['h3']])
  })

  test('a ramp: each size in turn, the last one repeating', () => {
    expect(rolloutBatches(hosts(4), { batch: [1, '50%'], wait: 0 })).toEqual([['h1'], ['h2', 'h3'], ['h4']])
    expect(rolloutBatches(hosts(7), { batch: [1, 2], wait: 0 })).toEqual([
      ['h1'],
      ['h2', 'h3'],
      ['h4', 'h5'],
      ['h6', 'h7']
    ])
  })

  test('the primary goes first, the others keep config order', () => {
    expect(rolloutBatches(hosts(4, 2), { batch: 2, wait: 0 })).toEqual([
      ['h3', 'h1'],
      ['h2', 'h4']
    ])
  })
})

describe('roles', () => {
  const KEY =
    '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n-----END OPENSSH PRIVATE KEY-----'
  const env = { SSH_KEY: KEY, KNOWN_HOSTS: '[127.0.0.2]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1' }
  const raw = (roles: Record<string, unknown>, hostRoles: string[][]) => ({
    app: 'shop',
    path: '/srv/shop',
    hosts: hostRoles.map((r, i) => ({ address: `127.0.0.${i + 2}`, name: `h${i + 1}`, roles: r })),
    ssh: { private_key: 'env:SSH_KEY', known_hosts: 'env:KNOWN_HOSTS' },
    stages: { restart: 'bin/restart' },
    verify: { command: 'check-web' },
    roles
  })

  test('a host with two roles that both set one key is refused, naming both roles', () => {
    const c = raw(
      {
        web: { verify: { command: 'a' } },
        worker: { verify: { command: 'b' } },
        bot: { stages: { restart: 'x' } }
      },
      [['web', 'worker'], ['bot']]
    )
    expect(() => validateConfig(c, '/tmp/x.yml', {}, env)).toThrow(ConfigError)
    expect(() => validateConfig(c, '/tmp/x.yml', {}, env)).toThrow(
      /h1 has roles web and worker, which both set verify \(roles\.web, roles\.worker\)/
    )
  })

  test('roles that set different keys combine; a key no role sets stays the top-level one', () => {
    const c = raw(
      {
        worker: { stages: { restart: 'systemctl restart shop-worker' } },
        canary: { verify: { command: 'check-canary' } }
      },
      [['worker', 'canary'], []]
    )
    const { config, hosts } = validateConfig(c, '/tmp/x.yml', {}, env)
    const h1 = configForRoles(config, hosts[0]?.roles ?? [])
    expect(h1.stages.restart).toBe('systemctl restart shop-worker')
    expect(h1.verify.command).toBe('check-canary')
    expect(h1.switch.strategy).toBe('symlink')
    expect(configForRoles(config, hosts[1]?.roles ?? [])).toBe(config)
  })
})

describe('the orchestrator runs a rollout batch by batch', () => {
  const session = (name: string): HostSession =>
    ({
      host: { name, kind: 'ssh', address: `10.0.0.${name.slice(1)}`, primary: name === 'h1', roles: ['web'] },
      layout: new Layout('/srv/app'),
      releases: ['R1'],
      current: 'R1',
      t: { exec: async () => ({ code: 0, stdout: '', stderr: '' }) }
    }) as unknown as HostSession
  const context = (sessions: HostSession[], lines: string[]): RunContext =>
    ({
      log: new DeployLog(
        undefined,
        {
          info: l => lines.push(l),
          warn: l => lines.push(l),
          error: l => lines.push(l),
          startGroup() {},
          endGroup() {}
        },
        new Redactor([])
      ),
      signal: new AbortController().signal,
      sessions,
      startedAt: new Date(),
      config: { app: 'shop', env: {}, lock: { ttl: 1_800_000 }, ssh: { command_timeout: 5000 } }
    }) as unknown as RunContext
  const stage = (
    name: string,
    effect: StageEffect,
    events: string[],
    fail: Record<string, string> = {}
  ): HostStage => ({
    name,
    scope: 'each-host',
    effect,
    async run(_c, s) {
      events.push(`${name} ${s.host.name}`)
      const why = fail[s.host.name]
      if (why) throw new StageError(name, why, s.host.name)
    },
    async undo(_c, s) {
      events.push(`undo ${name} ${s.host.name}`)
    }
  })

  test('two hosts failing verify in one batch: each its own error; batches 1-2 undone, batch 3 never started', async () => {
    const events: string[] = []
    const lines: string[] = []
    const hosts = ['h1', 'h2', 'h3', 'h4', 'h5'].map(session)
    const c = context(hosts, lines)
    const o = await runStages(
      c,
      [
        stage('deploy', 'disk', events),
        stage('switch', 'live', events),
        stage('verify', 'none', events, { h2: 'h2 answers 500', h3: 'h3 times out' })
      ],
      { rollout: { stages: ['switch', 'verify'], batches: [['h1'], ['h2', 'h3'], ['h4', 'h5']] } }
    )
    expect(o.exitCode).toBe(4)
    expect(events.filter(e => e.startsWith('switch') || e.startsWith('verify'))).toEqual([
      'switch h1',
      'verify h1',
      'switch h2',
      'switch h3',
      'verify h2',
      'verify h3'
    ])
    expect(events.filter(e => e.startsWith('undo switch'))).toEqual([
      'undo switch h3',
      'undo switch h2',
      'undo switch h1'
    ])
    const results = hostResultsOf(c, o, 'R2')
    expect(results.map(h => [h.name, h.result, h.error])).toEqual([
      ['h1', 'rolled-back', undefined],
      ['h2', 'rolled-back', 'h2 answers 500'],
      ['h3', 'rolled-back', 'h3 times out'],
      ['h4', 'not-switched', undefined],
      ['h5', 'not-switched', undefined]
    ])
    expect(results[3]).toMatchObject({
      stage: 'deploy',
      before: 'R1',
      after: 'R1',
      roles: ['web'],
      address: '10.0.0.4'
    })
    expect(o.records.map(r => `${r.name}${r.batch ? `#${r.batch}` : ''} ${r.status}`)).toEqual([
      'deploy ok',
      'switch#1 ok',
      'verify#1 ok',
      'switch#2 ok',
      'verify#2 failed',
      'undo switch undone',
      'undo deploy undone',
      'undo verify undone'
    ])
  })

  test('exit 5: the host whose undo failed is rollback-failed, the one put back is rolled-back', async () => {
    const events: string[] = []
    const c = context(['h1', 'h2', 'h3'].map(session), [])
    const sw = stage('switch', 'live', events)
    sw.undo = async (_c, s) => {
      if (s.host.name === 'h2') throw new StageError('rollback', 'h2 restart failed', 'h2')
    }
    const o = await runStages(c, [sw, stage('verify', 'none', events, { h2: 'h2 answers 500' })], {
      rollout: { stages: ['switch', 'verify'], batches: [['h1', 'h2'], ['h3']] }
    })
    expect(o.exitCode).toBe(5)
    expect(hostResultsOf(c, o, 'R2').map(h => [h.name, h.result, h.error])).toEqual([
      ['h1', 'rolled-back', undefined],
      ['h2', 'rollback-failed', 'h2 answers 500'],
      ['h3', 'not-switched', undefined]
    ])
    expect(hostResultsOf(c, o, 'R2')[1]?.after).toBeUndefined()
  })

  test('a host that does not answer before the first batch: nothing switches anywhere (exit 3)', async () => {
    const events: string[] = []
    const c = context(['h1', 'h2'].map(session), [])
    const o = await runStages(c, [stage('deploy', 'disk', events), stage('switch', 'live', events)], {
      rollout: {
        stages: ['switch'],
        batches: [['h1'], ['h2']],
        ready: async () => {
          throw new StageError('switch', 'h2 does not answer', 'h2')
        }
      }
    })
    expect(o.exitCode).toBe(3)
    expect(events).toEqual(['deploy h1', 'deploy h2', 'undo deploy h2', 'undo deploy h1'])
    expect(hostResultsOf(c, o, 'R2').map(h => [h.name, h.result, h.stage])).toEqual([
      ['h1', 'not-switched', 'deploy'],
      ['h2', 'failed', 'switch']
    ])
  })
})

describe('a role with its own switch strategy', () => {
  test('each host is switched by its own strategy, with its own settings', async () => {
    const calls: string[] = []
    const mk = (name: string, roles: string[]): HostSession =>
      ({
        host: { name, kind: 'ssh', address: '127.0.0.1', primary: name === 'h1', roles },
        layout: new Layout('/srv/app'),
        releases: ['R1'],
        current: 'R1',
        t: {
          exec: async (_cmd: string, o: { label?: string }) => {
            calls.push(`${name}: ${o.label}`)
            return { code: 0, stdout: '', stderr: '' }
          }
        }
      }) as unknown as HostSession
    const { config } = validateConfig(
      {
        app: 'shop',
        path: '/srv/app',
        hosts: [
          { address: '127.0.0.2', name: 'h1' },
          { address: '127.0.0.3', name: 'h2', roles: ['edge'] }
        ],
        ssh: { private_key: 'env:SSH_KEY', known_hosts: 'env:KNOWN_HOSTS' },
        stages: { restart: 'bin/restart' },
        roles: {
          edge: {
            switch: {
              strategy: 'blue-green',
              ports: [9001, 9002],
              start: 'bin/start',
              stop: 'bin/stop',
              health: 'http://{host}:{port}/health',
              upstream_file: '/etc/nginx/up.conf',
              proxy_reload: 'nginx -s reload'
            }
          }
        }
      },
      '/tmp/x.yml',
      {},
      {
        SSH_KEY:
          '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n-----END OPENSSH PRIVATE KEY-----',
        KNOWN_HOSTS: '[127.0.0.2]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1'
      }
    )
    const sessions = [mk('h1', []), mk('h2', ['edge'])]
    const c = {
      log: new DeployLog(
        undefined,
        { info() {}, warn() {}, error() {}, startGroup() {}, endGroup() {} },
        new Redactor([])
      ),
      signal: new AbortController().signal,
      sessions,
      startedAt: new Date(),
      config
    } as unknown as RunContext
    const strategy = strategyFor(c)
    await strategy.activate(c, sessions[0] as HostSession, 'R2', 'switch')
    await strategy.activate(c, sessions[1] as HostSession, 'R2', 'switch').catch(() => undefined)
    expect(calls[0]).toMatch(/^h1: switch current/)
    expect(calls.find(l => l.startsWith('h2'))).toBe('h2: read blue-green state')
    expect(calls.some(l => l.startsWith('h2: switch current'))).toBe(false)
  })
})
