import { describe, expect, test } from '@jest/globals'
import { runStages } from '../../../src/pipeline/orchestrator.js'
import { ProgressTracker, parseProgress, type RunProgress } from '../../../src/pipeline/progress.js'
import { needsFinishing } from '../../../src/flows/interrupted.js'
import { StageError } from '../../../src/core/errors.js'
import { DeployLog, type Reporter } from '../../../src/report/log.js'
import { Redactor } from '../../../src/report/redact.js'
import type { HostSession, RunContext } from '../../../src/host/context.js'
import type { Stage } from '../../../src/pipeline/stage.js'
import type { SwitchStrategy } from '../../../src/pipeline/switch.js'

const warnings: string[] = []
const reporter: Reporter = {
  info: () => {},
  warn: line => warnings.push(line),
  error: () => {},
  startGroup: () => {},
  endGroup: () => {}
}

function setup(save: (p: RunProgress) => void = () => {}) {
  const s = { host: { name: 'web-1' }, current: 'R1', releases: ['R1'] } as unknown as HostSession
  const ctx = {
    log: new DeployLog(undefined, reporter, new Redactor([])),
    signal: new AbortController().signal,
    sessions: [s],
    actor: { who: 'octocat' },
    config: { lock: { ttl: 1_800_000 } }
  } as unknown as RunContext
  const saved: RunProgress[] = []
  const tracker = new ProgressTracker(
    ctx,
    'deploy',
    new Date('2026-12-01T08:00:00Z'),
    p => {
      save(p)
      saved.push(JSON.parse(JSON.stringify(p)) as RunProgress)
    },
    { release: () => 'R2' }
  )
  return { ctx, s, tracker, saved }
}

/** A strategy that remembers what it did per host, as blue-green does. */
function fakeStrategy(events: string[], failActivate = false): SwitchStrategy {
  const state = new Map<HostSession, string>()
  return {
    name: 'fake',
    wentLive: s => state.has(s),
    save: s => state.get(s),
    resume: (s, saved) => void state.set(s, saved as string),
    async activate(_c, s, release) {
      state.set(s, `moved to ${release}`)
      events.push('activate')
      if (failActivate) throw new StageError('switch', 'restart failed', s.host.name)
    },
    async restore(_c, s) {
      events.push(`restore (${state.get(s)})`)
    }
  }
}

function switchStage(strategy: SwitchStrategy): Stage {
  return {
    name: 'switch',
    effect: 'live',
    changedLive: () => true,
    run: async c => {
      for (const s of c.sessions) await strategy.activate(c, s, 'R2', 'switch')
    },
    undo: async c => {
      for (const s of c.sessions) await strategy.restore(c, s, 'R2', 'rollback')
    }
  }
}

describe('ProgressTracker', () => {
  test('saves the stage reached, what served before, the switch with its strategy state, and verify', async () => {
    const { ctx, tracker, saved } = setup()
    ctx.lock = { who: 'octocat', pid: 1, runner: 'r', command: 'deploy', token: 't0k' }
    const events: string[] = []
    const strategy = tracker.watch(fakeStrategy(events))
    const stages = tracker.track([
      { name: 'preflight', run: async () => {} },
      switchStage(strategy),
      { name: 'verify', run: async () => {} }
    ])
    const outcome = await runStages(ctx, stages)
    expect(outcome.exitCode).toBe(0)
    // saved before the switch began: the host is switched, with what the strategy knew then
    const during = saved.find(p => p.hosts[0]?.switched)
    expect(during).toMatchObject({ stage: 'switch', verified: false, release: 'R2' })
    expect(during?.lock?.token).toBe('t0k')
    const last = saved.at(-1)
    expect(last).toMatchObject({
      stage: 'verify',
      stages: ['preflight', 'switch', 'verify'],
      verified: true,
      finished: false,
      hosts: [{ name: 'web-1', previous: 'R1', switched: true, restored: false, strategy: 'moved to R2' }]
    })
    tracker.finish()
    expect(saved.at(-1)?.finished).toBe(true)
    expect(needsFinishing(saved.at(-1))).toBe(false)
  })

  test('a failed switch that was undone is saved as restored; the undo is listed', async () => {
    const { ctx, tracker, saved } = setup()
    ctx.lock = { who: 'octocat', pid: 1, runner: 'r', command: 'deploy', token: 't0k' }
    const events: string[] = []
    const strategy = tracker.watch(fakeStrategy(events, true))
    const outcome = await runStages(ctx, tracker.track([switchStage(strategy)]))
    expect(outcome.exitCode).toBe(4)
    expect(events).toEqual(['activate', 'restore (moved to R2)'])
    expect(saved.at(-1)).toMatchObject({
      undone: ['switch'],
      verified: false,
      hosts: [{ switched: true, restored: true }]
    })
    expect(needsFinishing(saved.at(-1))).toBe(true)
    expect(needsFinishing(saved.at(-1), 't0k')).toBe(true)
    // the run released its lock (it records itself first): nothing left to do
    expect(needsFinishing(saved.at(-1), '')).toBe(false)
  })

  test("a stage's saved undo state is saved once the stage started", async () => {
    const { ctx, tracker, saved } = setup()
    const state = { started: false }
    const migrate: Stage = {
      name: 'migrate',
      save: () => ({ ...state }),
      run: async c => {
        state.started = true
        c.progress?.checkpoint()
        throw new StageError('migrate', 'migration broke')
      }
    }
    ctx.progress = tracker
    await runStages(ctx, tracker.track([migrate]))
    expect(saved.find(p => (p.saved.migrate as { started?: boolean })?.started)).toBeDefined()
    expect(saved[0]?.saved.migrate).toEqual({ started: false })
  })

  test('a save that throws does not stop the run; it is said once', async () => {
    warnings.length = 0
    const { ctx, tracker } = setup(() => {
      throw new Error('ENOSPC')
    })
    const outcome = await runStages(
      ctx,
      tracker.track([
        { name: 'a', run: async () => {} },
        { name: 'b', run: async () => {} }
      ])
    )
    expect(outcome.exitCode).toBe(0)
    expect(warnings.filter(w => w.includes("could not save the run's progress: ENOSPC"))).toHaveLength(1)
  })
})

describe('parseProgress', () => {
  test('reads what the tracker saved; anything else is no progress', () => {
    const p = { v: 1, hosts: [], command: 'deploy' }
    expect(parseProgress(JSON.stringify(p))).toEqual(p)
    expect(parseProgress('')).toBeUndefined()
    expect(parseProgress(undefined)).toBeUndefined()
    expect(parseProgress('{"v":2,"hosts":[]}')).toBeUndefined()
    expect(parseProgress('{torn')).toBeUndefined()
  })
})
