import { describe, expect, test } from '@jest/globals'
import {
  EFFECTS,
  exitCode,
  reverifyNow,
  undoFailureNeedsPerson,
  undoOrder
} from '../../../src/pipeline/policy.js'
import type { StageEffect } from '../../../src/pipeline/stage.js'

const touched = (list: [string, StageEffect][]) =>
  list.map(([item, effect], index) => ({ item, effect, index }))

describe('the failure policy', () => {
  test('undo order: data, then live, then disk, then none; newest first within each', () => {
    const order = undoOrder(
      touched([
        ['preflight', 'none'],
        ['deploy', 'disk'],
        ['migrate', 'data'],
        ['switch', 'live'],
        ['assets', 'disk'],
        ['seed', 'data'],
        ['proxy', 'live']
      ])
    ).map(t => t.item)
    expect(order).toEqual(['seed', 'migrate', 'proxy', 'switch', 'assets', 'deploy', 'preflight'])
  })

  test('a failed undo needs a person for data always, for live only when it went live, never for disk', () => {
    expect(undoFailureNeedsPerson('data', false)).toBe(true)
    expect(undoFailureNeedsPerson('live', true)).toBe(true)
    expect(undoFailureNeedsPerson('live', false)).toBe(false)
    expect(undoFailureNeedsPerson('disk', true)).toBe(false)
    expect(undoFailureNeedsPerson('none', true)).toBe(false)
    expect(Object.keys(EFFECTS).sort()).toEqual(['data', 'disk', 'live', 'none'])
  })

  test('re-verify: only after the live group, only when something went live and its undo succeeded', () => {
    expect(reverifyNow({ group: 'live', live: true, liveUndoFailed: false })).toBe(true)
    expect(reverifyNow({ group: 'live', live: true, liveUndoFailed: true })).toBe(false)
    expect(reverifyNow({ group: 'live', live: false, liveUndoFailed: false })).toBe(false)
    expect(reverifyNow({ group: 'data', live: true, liveUndoFailed: false })).toBe(false)
    expect(reverifyNow({ group: 'disk', live: true, liveUndoFailed: false })).toBe(false)
  })

  test('exit codes per src/core/exit.ts', () => {
    const base = { failed: true, live: false, needsPerson: false, badInput: false }
    expect(exitCode({ ...base, failed: false })).toBe(0)
    expect(exitCode(base)).toBe(3)
    expect(exitCode({ ...base, badInput: true })).toBe(2)
    expect(exitCode({ ...base, live: true })).toBe(4)
    expect(exitCode({ ...base, live: true, badInput: true })).toBe(4)
    expect(exitCode({ ...base, needsPerson: true })).toBe(5)
    expect(exitCode({ ...base, live: true, needsPerson: true })).toBe(5)
  })
})
