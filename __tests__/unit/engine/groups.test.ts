/**
 * The log's groups are a subscriber of the stage events (src/engine/groups.ts): one group per stage around
 * its lines, one `rollback` group around every undo and the re-verify, closed before the run's own lines.
 */
import { describe, expect, test } from '@jest/globals'
import { runStages } from '../../../src/pipeline/orchestrator.js'
import { stageGroups } from '../../../src/engine/groups.js'
import { StageError } from '../../../src/core/errors.js'
import { DeployLog, type Reporter } from '../../../src/report/log.js'
import { Redactor } from '../../../src/report/redact.js'
import type { HostSession, RunContext } from '../../../src/host/context.js'
import type { Stage, StageEvent } from '../../../src/pipeline/stage.js'

function setup() {
  const shown: string[] = []
  const reporter: Reporter = {
    info: l => shown.push(l),
    warn: l => shown.push(l),
    error: l => shown.push(l),
    startGroup: t => shown.push(`group ${t}`),
    endGroup: () => shown.push('endgroup')
  }
  const session = { host: { name: 'web-1' } } as unknown as HostSession
  const ctx = {
    log: new DeployLog(undefined, reporter, new Redactor(['s3cret'])),
    signal: new AbortController().signal,
    sessions: [session],
    config: { lock: { ttl: 1_800_000 } }
  } as unknown as RunContext
  return { shown, reporter, ctx }
}

/** A live host stage whose undo works and whose re-verify fails. */
const switchStage: Stage = {
  name: 'switch',
  scope: 'each-host',
  effect: 'live',
  async run(ctx, s) {
    ctx.log.info('switched', s.host.name)
  },
  async undo(ctx, s) {
    ctx.log.info('switched back', s.host.name)
  },
  async recheck(ctx) {
    ctx.log.info('checking the previous release')
    throw new StageError('verify', 'the previous release is unhealthy too', 'web-1')
  }
}
const deployStage: Stage = {
  name: 'deploy',
  effect: 'disk',
  async run() {},
  async undo(ctx) {
    ctx.log.info('release dir removed')
  }
}
const verify: Stage = {
  name: 'verify',
  run: () => Promise.reject(new StageError('verify', 'health check failed', 'web-1'))
}

describe('stageGroups', () => {
  test('each stage in its group; one rollback group holds every undo and the re-verify', async () => {
    const { shown, reporter, ctx } = setup()
    const groups = stageGroups(reporter)
    const events: StageEvent[] = []
    const o = await runStages(ctx, [deployStage, switchStage, verify], {
      onStage: e => {
        events.push(e)
        return groups.on(e)
      }
    })
    ctx.log.info('the verdict')
    expect(o.exitCode).toBe(5)
    const shape = shown.map(l => l.replace(/\(\d+(\.\d)? s\)/, '(t)'))
    expect(shape).toEqual([
      'group deploy',
      '[deploy] deploy done (t)',
      'endgroup',
      'group switch',
      '[switch] [web-1] switched',
      '[switch] switch done (t)',
      'endgroup',
      'group verify',
      '[verify] [web-1] FAILED: health check failed',
      'endgroup',
      'group rollback',
      '[rollback] [web-1] switched back',
      '[rollback] checking the previous release',
      '[rollback] [web-1] undo of switch FAILED: the previous release is unhealthy too',
      '[rollback] release dir removed',
      'endgroup',
      '[rollback] the verdict'
    ])
    // an undo finishes with its record's status, after the re-verify that failed it; the last says so
    const undos = events.filter(e => e.phase === 'undo')
    expect(undos.map(e => `${e.type} ${e.stage}${'status' in e ? ` ${e.status}` : ''}`)).toEqual([
      'stage-started switch',
      'stage-finished switch undo-failed',
      'stage-started deploy',
      'stage-finished deploy undone'
    ])
    expect(undos.map(e => 'lastUndo' in e && e.lastUndo)).toEqual([false, false, false, true])
    expect(o.records.map(r => `${r.name} ${r.status}`)).toEqual([
      'deploy ok',
      'switch ok',
      'verify failed',
      'undo switch undo-failed',
      'undo deploy undone'
    ])
  })

  test('without a subscriber the orchestrator opens no group', async () => {
    const { shown, ctx } = setup()
    await runStages(ctx, [deployStage, verify])
    expect(shown.filter(l => l.startsWith('group') || l === 'endgroup')).toEqual([])
  })
})
