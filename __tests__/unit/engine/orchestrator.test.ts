/**
 * The engine with a scripted transport and fake stages: the undo ledger of (stage, host), the undo order the
 * policy gives, re-verify once, bounded parallelism and batches.
 */
import { describe, expect, test } from '@jest/globals'
import { batchesOf, runStages } from '../../../src/pipeline/orchestrator.js'
import { ProgressTracker, type RunProgress } from '../../../src/pipeline/progress.js'
import { StageError } from '../../../src/core/errors.js'
import { switchStage } from '../../../src/pipeline/stages.js'
import { strategyFor } from '../../../src/pipeline/switch.js'
import { DeployLog, type Reporter } from '../../../src/report/log.js'
import { Redactor } from '../../../src/report/redact.js'
import { Layout } from '../../../src/commands/layout.js'
import type { HostSession, RunContext } from '../../../src/host/context.js'
import type { HostStage, Stage, StageEffect } from '../../../src/pipeline/stage.js'
import type { ExecResult, Transport } from '../../../src/transport/types.js'

/** A transport that answers from a script and records what each host was asked to run. */
function scripted(name: string, calls: string[], answer: (script: string) => ExecResult): Transport {
  return {
    exec: async (_cmd: string, opts: { stdin?: unknown }) => {
      const script = String(opts.stdin)
      calls.push(`${name}: ${script}`)
      return answer(script)
    }
  } as unknown as Transport
}

const ok: ExecResult = { code: 0, stdout: '', stderr: '' }

function host(
  name: string,
  calls: string[] = [],
  answer: (script: string) => ExecResult = () => ok
): HostSession {
  return {
    host: { name, kind: 'ssh', address: '127.0.0.1', primary: name === 'web-1' },
    layout: new Layout('/srv/app'),
    releases: ['R1', 'R2'],
    current: 'R1',
    t: scripted(name, calls, answer)
  } as unknown as HostSession
}

function ctx(
  sessions: HostSession[],
  lines: string[] = [],
  config: Record<string, unknown> = {}
): RunContext {
  const reporter: Reporter = {
    info: l => lines.push(l),
    warn: l => lines.push(l),
    error: l => lines.push(l),
    startGroup: () => {},
    endGroup: () => {}
  }
  return {
    log: new DeployLog(undefined, reporter, new Redactor([])),
    signal: new AbortController().signal,
    sessions,
    startedAt: new Date(),
    config: {
      app: 'shop',
      env: {},
      lock: { ttl: 1_800_000 },
      ssh: { command_timeout: 5000 },
      switch: { strategy: 'symlink' },
      stages: {},
      verify: {},
      ...config
    }
  } as unknown as RunContext
}

/** A host stage that records run and undo per host, failing where told. */
function hostStage(
  name: string,
  effect: StageEffect,
  events: string[],
  opts: { failOn?: string; undoFailOn?: string; recheck?: boolean; skipUndo?: string } = {}
): HostStage {
  return {
    name,
    scope: 'each-host',
    effect,
    async run(_c, s) {
      events.push(`run ${name} ${s.host.name}`)
      await new Promise(r => setTimeout(r, 5))
      if (opts.failOn === s.host.name)
        throw new StageError(name, `${name} broke on ${s.host.name}`, s.host.name)
    },
    needsUndo: opts.skipUndo ? s => s.host.name !== opts.skipUndo : undefined,
    async undo(_c, s) {
      events.push(`undo ${name} ${s.host.name}`)
      if (opts.undoFailOn === s.host.name)
        throw new StageError('rollback', `undo ${name} broke on ${s.host.name}`, s.host.name)
    },
    recheck: opts.recheck
      ? async (_c, hosts) => void events.push(`recheck ${hosts.map(s => s.host.name).join(',')}`)
      : undefined
  }
}

const primaryStage = (name: string, effect: StageEffect, events: string[], fail = false): Stage => ({
  name,
  scope: 'primary',
  effect,
  async run() {
    events.push(`run ${name}`)
    if (fail) throw new StageError(name, `${name} broke`, 'web-1')
  },
  async undo() {
    events.push(`undo ${name}`)
  }
})

const three = () => [host('web-1'), host('web-2'), host('web-3')]
const undos = (events: string[]) => events.filter(e => !e.startsWith('run'))

describe('the undo ledger', () => {
  test('undo order across data, live and disk: database, then code (newest host first), re-verify once, then files', async () => {
    const events: string[] = []
    const o = await runStages(
      ctx(three()),
      [
        hostStage('deploy', 'disk', events),
        primaryStage('migrate', 'data', events),
        hostStage('switch', 'live', events, { recheck: true }),
        hostStage('verify', 'none', events, { failOn: 'web-2' })
      ],
      { maxParallel: 1 }
    )
    expect(o.exitCode).toBe(4)
    expect(o.rolledBack).toBe(true)
    expect(undos(events)).toEqual([
      'undo migrate',
      'undo switch web-3',
      'undo switch web-2',
      'undo switch web-1',
      'recheck web-1,web-2,web-3',
      'undo deploy web-3',
      'undo deploy web-2',
      'undo deploy web-1',
      'undo verify web-2',
      'undo verify web-1'
    ])
    expect(o.records.filter(r => r.name.startsWith('undo')).map(r => `${r.name} ${r.status}`)).toEqual([
      'undo migrate undone',
      'undo switch undone',
      'undo deploy undone',
      'undo verify undone'
    ])
  })

  test('a host stage failing on host 2 of 3 (one at a time) undoes hosts 2 and 1 only; host 3 never starts', async () => {
    const events: string[] = []
    const o = await runStages(ctx(three()), [hostStage('switch', 'live', events, { failOn: 'web-2' })], {
      maxParallel: 1
    })
    expect(events).toEqual(['run switch web-1', 'run switch web-2', 'undo switch web-2', 'undo switch web-1'])
    expect(o.exitCode).toBe(4)
    expect(o.failure).toEqual({ stage: 'switch', host: 'web-2', message: 'switch broke on web-2' })
  })

  test('all at once (the default), every host was started, so every host is undone', async () => {
    const events: string[] = []
    await runStages(ctx(three()), [hostStage('switch', 'live', events, { failOn: 'web-2' })])
    expect(undos(events)).toEqual(['undo switch web-3', 'undo switch web-2', 'undo switch web-1'])
  })

  test('a host the stage says has nothing to undo is skipped; a stage with nothing anywhere is not recorded', async () => {
    const events: string[] = []
    const o = await runStages(
      ctx(three()),
      [
        hostStage('deploy', 'disk', events, { skipUndo: 'web-2' }),
        hostStage('noop', 'disk', events, { failOn: 'web-1', skipUndo: 'web-1' })
      ],
      { maxParallel: 1 }
    )
    expect(undos(events)).toEqual(['undo deploy web-3', 'undo deploy web-1'])
    expect(o.records.map(r => `${r.name} ${r.status}`)).toEqual([
      'deploy ok',
      'noop failed',
      'undo deploy undone'
    ])
    expect(o.exitCode).toBe(3)
  })

  test('an undo failing on one host still undoes the others; exit 5 names the stage; no re-verify', async () => {
    const events: string[] = []
    const o = await runStages(ctx(three()), [
      hostStage('switch', 'live', events, { undoFailOn: 'web-2', recheck: true }),
      primaryStage('verify', 'none', events, true)
    ])
    expect(
      undos(events)
        .filter(e => e.startsWith('undo switch'))
        .sort()
    ).toEqual(['undo switch web-1', 'undo switch web-2', 'undo switch web-3'])
    expect(events.some(e => e.startsWith('recheck'))).toBe(false)
    expect(o.exitCode).toBe(5)
    expect(o.rollbackFailed).toBe('undo of switch: undo switch broke on web-2')
    expect(o.records.find(r => r.name === 'undo switch')).toMatchObject({
      status: 'undo-failed',
      host: 'web-2'
    })
  })

  test('a failed disk undo is only recorded: exit stays 3', async () => {
    const events: string[] = []
    const o = await runStages(ctx(three()), [
      hostStage('deploy', 'disk', events, { undoFailOn: 'web-1' }),
      primaryStage('migrate', 'none', events, true)
    ])
    expect(o.exitCode).toBe(3)
    expect(o.records.find(r => r.name === 'undo deploy')).toMatchObject({ status: 'undo-failed' })
  })
})

describe('bounded parallelism and batches', () => {
  /** A host stage that counts how many hosts run at once. */
  function counting(order: string[], peak: { now: number; max: number }, failOn?: string): HostStage {
    return {
      name: 'switch',
      scope: 'each-host',
      effect: 'live',
      async run(_c, s) {
        peak.now++
        peak.max = Math.max(peak.max, peak.now)
        order.push(`start ${s.host.name}`)
        await new Promise(r => setTimeout(r, 10))
        peak.now--
        order.push(`end ${s.host.name}`)
        if (s.host.name === failOn) throw new StageError('switch', 'broke', s.host.name)
      },
      async undo() {}
    }
  }
  const six = () => ['a', 'b', 'c', 'd', 'e', 'f'].map(n => host(n))

  test('never more than maxParallel hosts at once, and every host runs', async () => {
    const order: string[] = []
    const peak = { now: 0, max: 0 }
    const o = await runStages(ctx(six()), [counting(order, peak)], { maxParallel: 2 })
    expect(o.exitCode).toBe(0)
    expect(peak.max).toBe(2)
    expect(order.filter(e => e.startsWith('start')).length).toBe(6)
  })

  test('unbounded by default: every host at once', async () => {
    const peak = { now: 0, max: 0 }
    await runStages(ctx(six()), [counting([], peak)])
    expect(peak.max).toBe(6)
  })

  test('batches run one after another, in the order given; hosts not named run last', async () => {
    const order: string[] = []
    const peak = { now: 0, max: 0 }
    await runStages(ctx(six()), [counting(order, peak)], { batches: [['f', 'e'], ['a']] })
    const pos = (e: string) => order.indexOf(e)
    expect(pos('end f')).toBeLessThan(pos('start a'))
    expect(pos('end e')).toBeLessThan(pos('start a'))
    expect(pos('end a')).toBeLessThan(pos('start b'))
    expect(order.filter(e => e.startsWith('start')).slice(0, 3)).toEqual(['start f', 'start e', 'start a'])
  })

  test('a failure in one batch: later batches never start and are not undone', async () => {
    const order: string[] = []
    const events: string[] = []
    const stage = counting(order, { now: 0, max: 0 }, 'c')
    stage.undo = async (_c, s) => void events.push(`undo ${s.host.name}`)
    const o = await runStages(ctx(six()), [stage], {
      batches: [
        ['a', 'b'],
        ['c', 'd'],
        ['e', 'f']
      ]
    })
    expect(o.exitCode).toBe(4)
    expect(order.some(e => e === 'start e' || e === 'start f')).toBe(false)
    expect(events).toEqual(['undo d', 'undo c', 'undo b', 'undo a'])
  })

  test('a run interrupted during one batch starts no further batch, and undoes what it started', async () => {
    const ac = new AbortController()
    const c = Object.assign(ctx(six()), { signal: ac.signal })
    const events: string[] = []
    const stage: HostStage = {
      name: 'switch',
      scope: 'each-host',
      effect: 'live',
      async run(_c, s) {
        events.push(`run ${s.host.name}`)
        if (s.host.name === 'b') ac.abort()
      },
      undo: async (_c, s) => void events.push(`undo ${s.host.name}`)
    }
    const o = await runStages(c, [stage], {
      batches: [
        ['a', 'b'],
        ['c', 'd']
      ]
    })
    expect(events).toEqual(['run a', 'run b', 'undo b', 'undo a'])
    expect(o.exitCode).toBe(4)
    expect(o.failure?.message).toMatch(/^interrupted: stopped before c, d, e, f$/)
  })

  test('batchesOf ignores unknown and repeated names', () => {
    const hosts = six()
    const names = batchesOf(hosts, [['b', 'zz', 'b'], ['a']]).map(g => g.map(s => s.host.name))
    expect(names).toEqual([['b'], ['a'], ['c', 'd', 'e', 'f']])
  })
})

describe('the real switch stage over a scripted transport', () => {
  const toR2 = /ln -sfn '?releases\/R2/
  test('a switch that fails on web-2 (one at a time) switches web-2 and web-1 back, not web-3', async () => {
    const calls: string[] = []
    const fail = (name: string) => (script: string) =>
      name === 'web-2' && toR2.test(script) ? { code: 1, stdout: '', stderr: 'disk full' } : ok
    const sessions = ['web-1', 'web-2', 'web-3'].map(n => host(n, calls, fail(n)))
    const c = ctx(sessions)
    const strategy = strategyFor(c)
    const o = await runStages(
      c,
      [
        switchStage(
          () => 'R2',
          () => strategy
        )
      ],
      { maxParallel: 1 }
    )
    expect(o.exitCode).toBe(4)
    const switched = calls.map(l => `${l.split(':')[0]} -> ${toR2.test(l) ? 'R2' : 'R1'}`)
    expect(switched).toEqual(['web-1 -> R2', 'web-2 -> R2', 'web-2 -> R1', 'web-1 -> R1'])
    expect(o.records.map(r => `${r.name} ${r.status}`)).toEqual(['switch failed', 'undo switch undone'])
  })

  test('the restored release is verified once, after the switch is undone everywhere', async () => {
    const calls: string[] = []
    const lines: string[] = []
    const sessions = ['web-1', 'web-2'].map(n => host(n, calls))
    const c = ctx(sessions, lines, { verify: { command: 'check-health' } })
    const strategy = strategyFor(c)
    const o = await runStages(c, [
      switchStage(
        () => 'R2',
        () => strategy
      ),
      primaryStage('verify', 'none', [], true)
    ])
    expect(o.exitCode).toBe(4)
    const verified = lines.filter(l => l.includes('previous release verified healthy'))
    expect(verified.length).toBe(1)
    expect(verified[0]).toMatch(/previous release verified healthy on web-1, web-2$/)
    const checks = calls.filter(l => l.includes('check-health'))
    expect(checks.length).toBe(2)
    expect(checks.every(l => l.includes('/srv/app/releases/R1'))).toBe(true)
    // both hosts were switched back before the first check
    const lastRestore = Math.max(...calls.map((l, i) => (/ln -sfn '?releases\/R1/.test(l) ? i : -1)))
    expect(calls.findIndex(l => l.includes('check-health'))).toBeGreaterThan(lastRestore)
  })
})

describe('the saved progress of a host stage (for the Action post step)', () => {
  test('a host stage counts as undone only once every host it started on is undone', async () => {
    const saved: RunProgress[] = []
    const sessions = three()
    const c = ctx(sessions)
    Object.assign(c, { actor: { who: 'octocat' } })
    const tracker = new ProgressTracker(
      c,
      'deploy',
      new Date(),
      p => void saved.push(JSON.parse(JSON.stringify(p)) as RunProgress),
      {
        release: () => 'R2'
      }
    )
    const seen: string[][] = []
    const deploy: HostStage = {
      name: 'deploy',
      scope: 'each-host',
      effect: 'disk',
      run: async () => {},
      undo: async () => void seen.push([...(saved.at(-1)?.undone ?? [])])
    }
    const o = await runStages(c, tracker.track([deploy, primaryStage('migrate', 'none', [], true)]), {
      maxParallel: 1
    })
    expect(o.exitCode).toBe(3)
    // while the second and third hosts are undone, deploy is not yet listed as undone
    expect(seen).toEqual([[], [], []])
    expect(saved.at(-1)?.undone).toEqual(['deploy', 'migrate'])
  })
})
