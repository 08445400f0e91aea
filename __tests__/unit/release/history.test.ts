import { describe, expect, test } from '@jest/globals'
import {
  badReleases,
  parseHistory,
  releasesToPrune,
  rollbackTarget,
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

  test('empty text is no history', () => {
    expect(parseHistory('')).toEqual([])
  })
})

describe('badReleases', () => {
  test('rolled-back or bad deploys, and the release a successful rollback left', () => {
    const h = [
      entry({ type: 'deploy', release: R1, status: 'success' }),
      entry({ type: 'deploy', release: R2, status: 'rolled-back' }),
      entry({ type: 'deploy', release: R3, status: 'success', bad: true }),
      entry({ type: 'rollback', release: R3, status: 'success', from: R4 }),
      entry({ type: 'rollback', release: R1, status: 'failed', from: R5 }),
      entry({ type: 'deploy', release: R5, status: 'failed' })
    ]
    expect([...badReleases(h)].sort()).toEqual([R2, R3, R4])
  })
})

describe('rollbackTarget', () => {
  const releases = [R3, R1, 'current', R5, R2, R4, '.current.x.tmp']

  test('the newest release older than current', () => {
    expect(rollbackTarget(releases, R4, [])).toBe(R3)
    expect(rollbackTarget(releases, R2, [])).toBe(R1)
  })

  test('skips releases marked bad', () => {
    const h = [
      entry({ type: 'deploy', release: R3, status: 'rolled-back' }),
      entry({ type: 'rollback', release: R1, status: 'success', from: R2 })
    ]
    expect(rollbackTarget(releases, R4, h)).toBe(R1)
  })

  test('none when nothing older is good', () => {
    expect(rollbackTarget(releases, R1, [])).toBeUndefined()
    const h = [entry({ type: 'deploy', release: R1, status: 'rolled-back' })]
    expect(rollbackTarget(releases, R2, h)).toBeUndefined()
    expect(rollbackTarget([], R2, [])).toBeUndefined()
  })

  test('without a current: the newest good release', () => {
    expect(rollbackTarget(releases, undefined, [])).toBe(R5)
    expect(
      rollbackTarget(releases, undefined, [
        entry({ type: 'deploy', release: R5, status: 'failed', bad: true })
      ])
    ).toBe(R4)
  })

  test('never returns current itself, nor a non-release name', () => {
    expect(rollbackTarget(['zzz', R3], R3, [])).toBeUndefined()
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
