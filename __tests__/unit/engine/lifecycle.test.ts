/**
 * The one run lifecycle (src/engine/lifecycle.ts) and its events, on a local host (the local transport runs
 * the real remote scripts in /bin/sh on a temp dir): the events in order, subscribers that throw or reject
 * never change the run, the report file, and a log dir that cannot be written.
 */
import { describe, expect, test } from '@jest/globals'
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { loadConfig } from '../../../src/config/load.js'
import { runLifecycle, type RunRequest } from '../../../src/engine/lifecycle.js'
import { RunEvents, onEvent, type RunEvent, type RunSubscriber } from '../../../src/engine/events.js'
import { preflightStage } from '../../../src/pipeline/stages.js'
import { StageError } from '../../../src/core/errors.js'
import type { Stage } from '../../../src/pipeline/stage.js'
import type { Reporter } from '../../../src/report/log.js'

const quiet: Reporter = {
  info: () => {},
  warn: () => {},
  error: () => {},
  startGroup: () => {},
  endGroup: () => {}
}

/** A request for a local host whose deploy root is a fresh temp dir; the log dir too unless given. */
function request(extra: Partial<RunRequest> = {}): { req: RunRequest; root: string; logDir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sd-lifecycle-'))
  const root = join(dir, 'srv')
  const file = join(dir, 'safe-deploy.yml')
  writeFileSync(file, stringify({ app: 'shop', path: root, hosts: [{ local: true }], source: { dir: '.' } }))
  const logDir = join(dir, 'logs')
  return { req: { loaded: loadConfig(file, {}, {}), reporter: quiet, logDir, ...extra }, root, logDir }
}

const work = (fail = false): Stage => ({
  name: 'work',
  async run() {
    if (fail) throw new StageError('work', 'the work broke', 'local')
  }
})

/** Records every event; `type/stage/phase/status` for short comparisons. */
function recorder(): { sub: RunSubscriber; events: RunEvent[]; short: () => string[] } {
  const events: RunEvent[] = []
  return {
    sub: { name: 'the recorder', on: e => void events.push(e) },
    events,
    short: () =>
      events.map(e =>
        e.type === 'stage-started'
          ? `${e.type} ${e.stage} ${e.phase}`
          : e.type === 'stage-finished'
            ? `${e.type} ${e.stage} ${e.phase} ${e.status}`
            : e.type
      )
  }
}

const throwing: RunSubscriber = {
  name: 'a broken subscriber',
  on: () => {
    throw new Error('boom')
  }
}
const rejecting: RunSubscriber = {
  name: 'a broken async subscriber',
  on: async () => {
    await Promise.resolve()
    throw new Error('async boom')
  }
}

describe('runLifecycle', () => {
  test('events in order; the report is the result; subscribers that throw or reject change nothing', async () => {
    const rec = recorder()
    const { req, root } = request({ subscribers: [throwing, rejecting, rec.sub] })
    const r = await runLifecycle(req, {
      command: 'backup',
      intro: () => 'backup of shop',
      plan: () => ({
        stages: [preflightStage({ command: 'backup', deploying: false }), work()],
        finishOn: 'primary'
      })
    })
    expect(r).toMatchObject({ command: 'backup', status: 'success', exitCode: 0 })
    expect(r.verdict).toMatch(/^BACKUP SUCCESS \(\d+\.\d s\)$/)
    expect(rec.short()).toEqual([
      'run-started',
      'stage-started preflight run',
      'stage-finished preflight run ok',
      'stage-started work run',
      'stage-finished work run ok',
      'run-finished'
    ])
    const finished = rec.events.at(-1) as Extract<RunEvent, { type: 'run-finished' }>
    expect(finished.result).toBe(r)
    expect(JSON.parse(readFileSync(r.reportFile as string, 'utf8'))).toEqual(r)
    // each failure is one warning in the log, naming the subscriber and the event; the run went on
    const log = readFileSync(r.logFile as string, 'utf8')
    expect(log).toContain('a broken subscriber failed on run-started (boom); the run goes on')
    expect(log).toContain('a broken async subscriber failed on stage-finished (async boom); the run goes on')
    // the lock was released and the run's log is on the host
    expect(existsSync(join(root, '.safe-deploy', 'lock'))).toBe(false)
    expect(readFileSync(join(root, '.safe-deploy', 'deploy.log'), 'utf8')).toContain(r.verdict)
  })

  test('a failed stage: stage-finished failed with the error, exit 3, the verdict in the report', async () => {
    const rec = recorder()
    const { req } = request({ subscribers: [rec.sub] })
    const r = await runLifecycle(req, {
      command: 'prune',
      intro: () => 'prune of shop',
      plan: () => ({ stages: [preflightStage({ command: 'prune', deploying: false }), work(true)] })
    })
    expect(r).toMatchObject({ command: 'prune', status: 'failed', exitCode: 3 })
    expect(r.verdict).toMatch(/^PRUNE FAILED at work on local: the work broke\. Nothing live was changed/)
    expect(rec.events).toContainEqual(
      expect.objectContaining({
        type: 'stage-finished',
        stage: 'work',
        status: 'failed',
        error: 'the work broke',
        host: 'local'
      })
    )
    expect(JSON.parse(readFileSync(r.reportFile as string, 'utf8'))).toMatchObject({ exitCode: 3 })
  })

  test('a rollback that fails (exit 5): a host-state event per host, then run-finished with the same states', async () => {
    const rec = recorder()
    const { req } = request({ subscribers: [rec.sub] })
    let live = false
    const golive: Stage = {
      name: 'switch',
      effect: 'live',
      changedLive: () => live,
      async run() {
        live = true
      },
      async undo() {
        throw new StageError('switch', 'cannot put it back', 'local')
      }
    }
    const r = await runLifecycle(req, {
      command: 'backup',
      intro: () => 'backup of shop',
      plan: () => ({
        stages: [preflightStage({ command: 'backup', deploying: false }), golive, work(true)]
      })
    })
    expect(r.exitCode).toBe(5)
    const states = rec.events.filter(e => e.type === 'host-state')
    expect(states).toEqual([
      {
        type: 'host-state',
        state: { host: 'local', reachable: true, note: 'no release is current (`current` is missing)' }
      }
    ])
    expect(r.hostStates).toEqual(states.map(e => (e as Extract<RunEvent, { type: 'host-state' }>).state))
    expect(rec.short().slice(-4)).toEqual([
      'stage-started switch undo',
      'stage-finished switch undo undo-failed',
      'host-state',
      'run-finished'
    ])
  })

  test('a log dir that cannot be written: the run still succeeds, with no log or report file named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sd-nolog-'))
    writeFileSync(join(dir, 'file'), '')
    const { req, root } = request({ logDir: join(dir, 'file', 'logs') })
    const r = await runLifecycle(req, {
      command: 'backup',
      intro: () => 'backup of shop',
      plan: () => ({ stages: [preflightStage({ command: 'backup', deploying: false }), work()] })
    })
    expect(r).toMatchObject({ status: 'success', exitCode: 0 })
    expect(r.logFile).toBeUndefined()
    expect(r.reportFile).toBeUndefined()
    expect(readdirSync(dir)).toEqual(['file'])
    expect(readFileSync(join(root, '.safe-deploy', 'deploy.log'), 'utf8')).toContain('BACKUP SUCCESS')
  })
})

describe('RunEvents', () => {
  test('every subscriber gets every event in order, even after one before it threw', async () => {
    const got: string[] = []
    const warnings: string[] = []
    const events = new RunEvents(
      [throwing, rejecting, onEvent('only stages', 'stage-started', e => void got.push(e.stage))],
      m => warnings.push(m)
    )
    await events.emit({ type: 'stage-started', stage: 'a', phase: 'run' })
    await events.emit({ type: 'host-state', state: { host: 'h', reachable: false, note: 'n' } })
    await events.emit({ type: 'stage-started', stage: 'b', phase: 'undo' })
    expect(got).toEqual(['a', 'b'])
    expect(warnings).toHaveLength(6)
    expect(warnings[0]).toBe('a broken subscriber failed on stage-started (boom); the run goes on')
  })

  test('a warning that itself throws is swallowed', async () => {
    const events = new RunEvents([throwing], () => {
      throw new Error('no log either')
    })
    await expect(events.emit({ type: 'stage-started', stage: 'a', phase: 'run' })).resolves.toBeUndefined()
  })
})

describe('release-chosen', () => {
  test('told once, before the first stage that starts with the release known, with the one serving before', async () => {
    const rec = recorder()
    const { req } = request({ subscribers: [rec.sub] })
    let release: string | undefined
    const choose: Stage = {
      name: 'choose',
      async run() {
        release = 'r2'
      }
    }
    await runLifecycle(req, {
      command: 'deploy',
      intro: () => 'deploy of shop',
      plan: () => ({
        stages: [preflightStage({ command: 'deploy', deploying: false }), choose, work(), work()],
        release: () => release,
        previous: () => 'r1'
      })
    })
    expect(rec.short().slice(0, 6)).toEqual([
      'run-started',
      'stage-started preflight run',
      'stage-finished preflight run ok',
      'stage-started choose run',
      'stage-finished choose run ok',
      'release-chosen'
    ])
    expect(rec.events.filter(e => e.type === 'release-chosen')).toEqual([
      { type: 'release-chosen', release: 'r2', previous: 'r1' }
    ])
  })
})
