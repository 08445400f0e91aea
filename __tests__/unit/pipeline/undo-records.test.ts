/**
 * The rollback part of a run shows only what it did: no `== rollback` header with nothing under it, and no
 * "undo X undone" record for an undo that had nothing to do (issue 7, "should" list).
 */
import { describe, expect, test } from '@jest/globals'
import { runStages as runWith } from '../../../src/pipeline/orchestrator.js'
import { stageGroups } from '../../../src/engine/groups.js'
import { StageError } from '../../../src/core/errors.js'
import { DeployLog, type Reporter } from '../../../src/report/log.js'
import { Redactor } from '../../../src/report/redact.js'
import type { RunContext } from '../../../src/host/context.js'
import type { Stage } from '../../../src/pipeline/stage.js'

/** The orchestrator with the log's groups subscribed to its stage events, as a run has them. */
const runStages = (c: { ctx: RunContext; reporter: Reporter }, stages: Stage[]) =>
  runWith(c.ctx, stages, { onStage: stageGroups(c.reporter).on })

function ctx(groups: string[]): { ctx: RunContext; reporter: Reporter } {
  const reporter: Reporter = {
    info: () => {},
    warn: () => {},
    error: () => {},
    startGroup: t => groups.push(t),
    endGroup: () => {}
  }
  const c = {
    log: new DeployLog(undefined, reporter, new Redactor([])),
    signal: new AbortController().signal,
    sessions: [],
    config: { lock: { ttl: 1_800_000 } }
  } as unknown as RunContext
  return { ctx: c, reporter }
}

const failing = (name: string): Stage => ({
  name,
  run: () => Promise.reject(new StageError(name, `${name} broke`, 'web-1'))
})

describe('the rollback section of a run', () => {
  test('a failed preflight has nothing to undo: no rollback header, no undo records, exit 3', async () => {
    const groups: string[] = []
    const o = await runStages(ctx(groups), [failing('preflight'), { name: 'test', run: async () => {} }])
    expect(o.exitCode).toBe(3)
    expect(groups).toEqual(['preflight'])
    expect(o.records.map(r => r.name)).toEqual(['preflight'])
  })

  test('an undo that says it has nothing to do is neither run nor recorded', async () => {
    const groups: string[] = []
    const events: string[] = []
    const noop: Stage = {
      name: 'migrate',
      run: async () => {},
      needsUndo: () => false,
      undo: async () => {
        events.push('undo migrate')
      }
    }
    const o = await runStages(ctx(groups), [noop, failing('switch')])
    expect(events).toEqual([])
    expect(o.records.map(r => `${r.name} ${r.status}`)).toEqual(['migrate ok', 'switch failed'])
    expect(groups).toEqual(['migrate', 'switch'])
  })

  test('an undo with work to do still runs under one rollback header and is recorded', async () => {
    const groups: string[] = []
    const events: string[] = []
    const deploy: Stage = {
      name: 'deploy',
      run: async () => {},
      needsUndo: () => true,
      undo: async () => {
        events.push('undo deploy')
      }
    }
    const o = await runStages(ctx(groups), [deploy, failing('verify')])
    expect(events).toEqual(['undo deploy'])
    expect(o.records.map(r => `${r.name} ${r.status}`)).toEqual([
      'deploy ok',
      'verify failed',
      'undo deploy undone'
    ])
    expect(groups).toEqual(['deploy', 'verify', 'rollback'])
  })
})
