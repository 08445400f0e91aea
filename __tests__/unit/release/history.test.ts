import { describe, expect, test } from '@jest/globals'
import {
  parseHistory,
  releaseStates,
  releasesToPrune,
  rollbackTarget,
  unfinishedReleases,
  type HistoryEntry
} from '../../../src/release/history.js'

const R1 = '20261101T100000Z-aaaaaaa'
const R2 = '20261102T100000Z-bbbbbbb'
const R3 = '20261103T100000Z-ccccccc'
const R4 = '20261104T100000Z-ddddddd'
const R5 = '20261105T100000Z-local'

function entry(e: Partial<HistoryEntry> & Pick<HistoryEntry, 'type' | 'release' | 'status'>): HistoryEntry {
  return {
    actor: 'alice',
    started: '2026-11-01T10:00:00Z',
    finished: '2026-11-01T10:01:00Z',
    duration_s: 60,
    hosts: ['web-1'],
    ...e
  }
}

describe('parseHistory', () => {
  test('reads one JSON object per line, skipping blank and torn lines', () => {
    const a = entry({ type: 'deploy', release: R1, status: 'success' })
    const b = entry({ type: 'deploy', release: R2, status: 'rolled-back', bad: true })
    const text = [
      JSON.stringify(a),
      '',
      '   ',
      JSON.stringify(b).slice(0, 25),
      '{"type":"deploy"}',
      'null',
      '42',
      '"release"',
      JSON.stringify(b),
      ''
    ].join('\n')
    expect(parseHistory(text)).toEqual([a, b])
  })

  test('a torn line glued to the next entry keeps that entry', () => {
    const a = entry({ type: 'deploy', release: R1, status: 'success' })
    const b = entry({ type: 'deploy', release: R2, status: 'rolled-back', bad: true })
    const c = entry({ type: 'deploy', release: R3, status: 'success' })
    const torn = JSON.stringify(a).slice(0, 40)
    const text = [JSON.stringify(a), torn + JSON.stringify(b), JSON.stringify(c)].join('\n')
    expect(parseHistory(text)).toEqual([a, b, c])
    // torn inside a nested value (the `{` of an object-looking string) still finds the real entry
    expect(parseHistory(`{"type":"deploy","error":"{x${JSON.stringify(b)}`)).toEqual([b])
  })

  test('empty text is no history', () => {
    expect(parseHistory('')).toEqual([])
  })
})

describe('rollbackTarget', () => {
  const releases = [R3, R1, 'current', R5, R2, R4, '.current.x.tmp']
  const ok = (release: string, more: Partial<HistoryEntry> = {}) =>
    entry({ type: 'deploy', release, status: 'success', verified: true, ...more })

  test('the release history recorded as verified healthy last, before current', () => {
    const h = [ok(R1), ok(R2), ok(R3), ok(R4)]
    expect(rollbackTarget(releases, R4, h)).toBe(R3)
    expect(rollbackTarget(releases, R2, h)).toBe(R4)
  })

  test('history order, not name order: ids from a runner clock an hour behind', () => {
    // R1 was deployed last (its name is the oldest): it is what served before R2 came back
    const h = [ok(R2), ok(R3), ok(R1)]
    expect(rollbackTarget(releases, R1, h)).toBe(R3)
    expect(rollbackTarget(releases, R3, h)).toBe(R1)
  })

  test('no history, no target: disk names alone never make a release good', () => {
    expect(rollbackTarget(releases, R4, [])).toBeUndefined()
    expect(rollbackTarget(releases, undefined, [])).toBeUndefined()
  })

  test('skips releases marked bad, rolled back, interrupted, failed, or left by a rollback', () => {
    const h = [
      ok(R1),
      ok(R2),
      entry({ type: 'deploy', release: R3, status: 'rolled-back', bad: true }),
      entry({ type: 'rollback', release: R1, status: 'success', from: R2 }),
      ok(R4),
      entry({ type: 'deploy', release: R5, status: 'interrupted' })
    ]
    expect(rollbackTarget(releases, R4, h)).toBe(R1)
    expect(rollbackTarget(releases, R1, h)).toBe(R4)
    const h2 = [ok(R1), ok(R2), entry({ type: 'deploy', release: R2, status: 'interrupted' })]
    expect(rollbackTarget(releases, R3, h2)).toBe(R1)
  })

  test('the newest entry of a release decides, and a later success makes it good again', () => {
    const h = [
      ok(R1),
      ok(R2),
      entry({ type: 'rollback', release: R1, status: 'success', from: R2 }),
      entry({ type: 'rollback', release: R2, status: 'success', from: R1, verified: true })
    ]
    // R1 was left by the last rollback; R2 serves again
    expect(rollbackTarget(releases, R2, h)).toBeUndefined()
    expect(rollbackTarget(releases, R3, h)).toBe(R2)
  })

  test('a run that failed before anything live changed says nothing of its release', () => {
    const h = [
      ok(R1),
      ok(R2),
      // a refused rollback to R1 (database choice missing), a deploy refused by the lock
      entry({ type: 'rollback', release: R1, status: 'failed', from: R2 }),
      entry({ type: 'deploy', release: R3, status: 'failed' })
    ]
    expect(rollbackTarget(releases, R2, h)).toBe(R1)
    // a rollback whose target went live and failed its checks marks it bad
    const h2 = [...h, entry({ type: 'rollback', release: R1, status: 'failed', from: R2, bad: true })]
    expect(rollbackTarget(releases, R2, h2)).toBeUndefined()
    const h3 = [...h, entry({ type: 'rollback', release: R1, status: 'rolled-back', from: R2 })]
    expect(rollbackTarget(releases, R2, h3)).toBeUndefined()
  })

  test('an old success entry without `verified` counts; `verified: false` does not', () => {
    const h = [entry({ type: 'deploy', release: R1, status: 'success' }), ok(R2, { verified: false })]
    expect(rollbackTarget(releases, R3, h)).toBe(R1)
  })

  test('only releases that exist on disk and are not current', () => {
    const h = [ok(R1), ok(R2), ok(R3)]
    expect(rollbackTarget([R1, R3], R3, h)).toBe(R1)
    expect(rollbackTarget([R3], R3, h)).toBeUndefined()
    expect(rollbackTarget(['zzz', R3], undefined, [...h, ok('zzz')])).toBe(R3)
  })
})

describe('unfinishedReleases', () => {
  test('no completion marker, not current, never served', () => {
    const h = [entry({ type: 'deploy', release: R1, status: 'success' })]
    // R1 predates completion markers but served; R2 is current; R3 is complete; R4 was never finished
    expect(unfinishedReleases([R1, R2, R3, R4, 'notes'], [R3], R2, h)).toEqual([R4])
    expect(unfinishedReleases([R4], [], undefined, h)).toEqual([R4])
    // no history at all: an old release and a half-made one look the same, so none is removed
    expect(unfinishedReleases([R1, R4], [], undefined, [])).toEqual([])
  })
})

describe('releasesToPrune', () => {
  const all = [R5, R1, R3, R2, R4]

  test('keeps the newest N', () => {
    expect(releasesToPrune(all, 3, [])).toEqual([R1, R2])
    expect(releasesToPrune(all, 5, [])).toEqual([])
    expect(releasesToPrune(all, 10, [])).toEqual([])
  })

  test('never current nor previous, even when older than the newest N', () => {
    expect(releasesToPrune(all, 2, [R1, R2])).toEqual([R3])
    expect(releasesToPrune(all, 2, [R4, undefined])).toEqual([R1, R2, R3])
  })

  test('ignores names that are not releases', () => {
    expect(releasesToPrune(['current', 'tmp', '.current.x.tmp', R1, R2, R3], 2, [])).toEqual([R1])
  })
})

describe('releaseStates: one word per release', () => {
  const e = (x: Partial<HistoryEntry>): HistoryEntry => ({
    type: 'deploy',
    release: 'r',
    actor: 'a',
    status: 'success',
    started: '',
    finished: '',
    duration_s: 0,
    hosts: [],
    ...x
  })
  test('verified, bad, interrupted, rolled back from, unknown', () => {
    const states = releaseStates([
      e({ release: 'r1', verified: true }),
      e({ release: 'r2', verified: true }),
      e({ release: 'r3', status: 'rolled-back', bad: true }),
      e({ release: 'r4', status: 'interrupted', bad: true }),
      // a manual rollback from r2 to r1: r2 is rolled back from, r1 verified again
      e({ type: 'rollback', release: 'r1', from: 'r2', verified: true }),
      // a run that failed before anything live changed says nothing
      e({ release: 'r1', status: 'failed' })
    ])
    expect(Object.fromEntries(states)).toEqual({
      r1: 'verified',
      r2: 'rolled back from',
      r3: 'bad',
      r4: 'interrupted'
    })
    expect(states.get('r9') ?? 'unknown').toBe('unknown')
  })
  test('a release marked bad stays bad when a rollback leaves it', () => {
    const states = releaseStates([
      e({ release: 'r1', verified: true }),
      e({ release: 'r2', status: 'rolled-back', bad: true }),
      e({ type: 'rollback', release: 'r1', from: 'r2' })
    ])
    expect(states.get('r2')).toBe('bad')
  })
})
