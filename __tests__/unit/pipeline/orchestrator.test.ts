import { describe, expect, test } from '@jest/globals'
import { runStages } from '../../../src/pipeline/orchestrator.js'
import { StageError } from '../../../src/core/errors.js'
import { DeployLog, type Reporter } from '../../../src/report/log.js'
import { Redactor } from '../../../src/report/redact.js'
import type { HostSession, RunContext } from '../../../src/host/context.js'
import { Layout } from '../../../src/commands/layout.js'
import type { Stage, UndoInfo } from '../../../src/pipeline/stage.js'

const quiet: Reporter = {
  info: () => {},
  warn: () => {},
  error: () => {},
  startGroup: () => {},
  endGroup: () => {}
}

function ctx(signal = new AbortController().signal): RunContext {
  return {
    log: new DeployLog(undefined, quiet, new Redactor([])),
    signal,
    sessions: [],
    config: { lock: { ttl: 1_800_000 } }
  } as unknown as RunContext
}

/** A stage that records what happened to it in `events`. */
function stage(
  name: string,
  events: string[],
  opts: {
    fail?: boolean
    live?: boolean
    undo?: 'ok' | 'fail'
    undoFirst?: boolean
    mustSucceed?: boolean
  } = {}
): Stage {
  let ran = false
  return {
    name,
    // undoFirst and mustSucceed are what a `data` stage is (src/pipeline/policy.ts)
    effect: opts.undoFirst || opts.mustSucceed ? 'data' : opts.live ? 'live' : opts.undo ? 'disk' : 'none',
    changedLive: opts.live ? () => ran : undefined,
    async run() {
      ran = true
      events.push(`run ${name}`)
      if (opts.fail) throw new StageError(name, `${name} broke`, 'web-1')
    },
    undo: opts.undo
      ? async (_c: RunContext, info: UndoInfo) => {
          events.push(`undo ${name}${info.live ? ' (live)' : ''}`)
          if (opts.undo === 'fail') throw new Error(`undo ${name} broke`)
        }
      : undefined
  }
}

describe('runStages', () => {
  test('all stages pass: exit 0, no undo', async () => {
    const events: string[] = []
    const o = await runStages(ctx(), [stage('a', events, { undo: 'ok' }), stage('b', events)])
    expect(o.exitCode).toBe(0)
    expect(o.failure).toBeUndefined()
    expect(events).toEqual(['run a', 'run b'])
    expect(o.records.map(r => [r.name, r.status])).toEqual([
      ['a', 'ok'],
      ['b', 'ok']
    ])
  })

  test('a failure before anything live: the failed stage then the earlier ones are undone, exit 3', async () => {
    const events: string[] = []
    const o = await runStages(ctx(), [
      stage('deploy', events, { undo: 'ok' }),
      stage('build', events, { undo: 'ok', fail: true }),
      stage('switch', events, { undo: 'ok', live: true })
    ])
    expect(o.exitCode).toBe(3)
    expect(o.failure).toEqual({ stage: 'build', host: 'web-1', message: 'build broke' })
    expect(events).toEqual(['run deploy', 'run build', 'undo build', 'undo deploy'])
    expect(o.rolledBack).toBe(false)
  })

  test('a failure after a live stage: rolled back, exit 4, undos told it went live', async () => {
    const events: string[] = []
    const o = await runStages(ctx(), [
      stage('deploy', events, { undo: 'ok' }),
      stage('switch', events, { undo: 'ok', live: true }),
      stage('verify', events, { fail: true })
    ])
    expect(o.exitCode).toBe(4)
    expect(o.rolledBack).toBe(true)
    expect(events).toEqual([
      'run deploy',
      'run switch',
      'run verify',
      'undo switch (live)',
      'undo deploy (live)'
    ])
  })

  test('undoFirst stages are undone before the others (database before code)', async () => {
    const events: string[] = []
    await runStages(ctx(), [
      stage('deploy', events, { undo: 'ok' }),
      stage('migrate', events, { undo: 'ok', undoFirst: true }),
      stage('switch', events, { undo: 'ok', live: true }),
      stage('verify', events, { fail: true })
    ])
    expect(events.filter(e => e.startsWith('undo'))).toEqual([
      'undo migrate (live)',
      'undo switch (live)',
      'undo deploy (live)'
    ])
  })

  test('a failed undo of a live stage is exit 5 and says which', async () => {
    const events: string[] = []
    const o = await runStages(ctx(), [
      stage('switch', events, { undo: 'fail', live: true }),
      stage('verify', events, { fail: true })
    ])
    expect(o.exitCode).toBe(5)
    expect(o.rollbackFailed).toBe('undo of switch: undo switch broke')
    expect(o.rolledBack).toBe(false)
  })

  test('a failed undo of a stage that must succeed (the database) is exit 5 even before the switch', async () => {
    const events: string[] = []
    const o = await runStages(ctx(), [
      stage('migrate', events, { undo: 'fail', mustSucceed: true, fail: true })
    ])
    expect(o.exitCode).toBe(5)
    expect(o.rollbackFailed).toContain('undo of migrate')
  })

  test('a failed undo of an ordinary stage is only a record: exit 3', async () => {
    const events: string[] = []
    const o = await runStages(ctx(), [stage('deploy', events, { undo: 'fail', fail: true })])
    expect(o.exitCode).toBe(3)
    expect(o.records.at(-1)).toMatchObject({ name: 'undo deploy', status: 'undo-failed' })
  })

  test('the restored release is re-verified after a live rollback; its failure is exit 5', async () => {
    const events: string[] = []
    const host = { host: { name: 'web-1' } } as unknown as HostSession
    const stages = (recheck: () => Promise<void>): Stage[] => [
      {
        name: 'switch',
        scope: 'each-host',
        effect: 'live',
        run: async () => void events.push('run switch'),
        undo: async () => void events.push('undo switch'),
        recheck
      },
      stage('verify', events, { fail: true })
    ]
    const c = () => Object.assign(ctx(), { sessions: [host] })
    const ok = await runStages(
      c(),
      stages(async () => void events.push('reverify'))
    )
    expect(ok.exitCode).toBe(4)
    expect(events.at(-1)).toBe('reverify')
    const bad = await runStages(
      c(),
      stages(async () => {
        throw new StageError('rollback', 'previous release answers 500', 'web-1')
      })
    )
    expect(bad.exitCode).toBe(5)
    expect(bad.rollbackFailed).toContain('previous release answers 500')
  })

  test('an interrupted run stops before the next stage and still undoes, with a live signal for the undo', async () => {
    const events: string[] = []
    const ac = new AbortController()
    const c = ctx(ac.signal)
    let undoSignalAborted: boolean | undefined
    const first: Stage = {
      name: 'deploy',
      async run() {
        events.push('run deploy')
        ac.abort()
      },
      async undo(u: RunContext) {
        undoSignalAborted = u.signal.aborted
        events.push('undo deploy')
      }
    }
    const o = await runStages(c, [first, stage('switch', events, { undo: 'ok', live: true })])
    expect(o.exitCode).toBe(3)
    expect(o.failure?.stage).toBe('switch')
    expect(o.failure?.message).toContain('interrupted')
    expect(events).toEqual(['run deploy', 'undo deploy'])
    expect(undoSignalAborted).toBe(false)
  })
})

describe('the lock lease', () => {
  /** A context holding the lock on one fake host whose renewals answer with `renew()`. */
  function leased(ttl: number, renew: () => Promise<string>) {
    const c = ctx()
    const calls: string[] = []
    ;(c.config as unknown as { lock: { ttl: number } }).lock.ttl = ttl
    ;(c.config as unknown as { ssh: { command_timeout: number } }).ssh = { command_timeout: 5000 }
    c.lock = { who: 'a', pid: 1, runner: 'r', command: 'deploy', token: 'tok' }
    c.sessions = [
      {
        host: { name: 'web-1', primary: true },
        layout: new Layout('/srv/app'),
        releases: [],
        t: {
          exec: async (_cmd: string, opts: { stdin?: string }) => {
            calls.push(String(opts.stdin))
            return { code: 0, stdout: await renew(), stderr: '' }
          }
        }
      } as unknown as HostSession
    ]
    return { c, calls }
  }

  /** A stage that runs until its signal is aborted (or `ms` pass). */
  const long = (ms: number, events: string[]): Stage => ({
    name: 'deploy',
    run: (c: RunContext) =>
      new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, ms)
        c.signal.addEventListener('abort', () => {
          clearTimeout(t)
          reject(new Error('interrupted'))
        })
      }),
    undo: async () => void events.push('undo deploy')
  })

  test('renewed on a timer while a stage runs, longer than the ttl', async () => {
    const { c, calls } = leased(600, async () => 'STATE=renewed\n')
    const out = await runStages(c, [long(1500, [])])
    expect(out.exitCode).toBe(0)
    expect(calls.length).toBeGreaterThanOrEqual(3)
    expect(calls.every(s => s.includes('"token":"tok"'))).toBe(true)
  })

  test('a renewal that finds the lock lost or taken stops the stage and undoes it', async () => {
    const events: string[] = []
    const { c } = leased(600, async () => 'STATE=lost\n')
    const out = await runStages(c, [long(10_000, events)])
    expect(out.exitCode).toBe(3)
    expect(out.failure?.message).toMatch(
      /^the deploy lock was lost on web-1: it was removed or taken by another run/
    )
    expect(events).toEqual(['undo deploy'])
    expect(c.signal.aborted).toBe(false)
  })

  test('no renewal going through for a whole ttl counts as lost', async () => {
    const events: string[] = []
    const { c } = leased(600, async () => {
      throw new Error('connection reset')
    })
    const out = await runStages(c, [long(10_000, events)])
    expect(out.failure?.message).toMatch(/^the deploy lock was lost: it could not be renewed for 1 s/)
    expect(events).toEqual(['undo deploy'])
  })
})
