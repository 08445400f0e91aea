/** rerunOf: what deploying a commit again means, from history alone. */
import { describe, expect, test } from '@jest/globals'
import { rerunOf, type HistoryEntry } from '../../../src/release/history.js'

const A = 'a'.repeat(40)
const B = 'b'.repeat(40)
const RA = '20261201T100000Z-aaaaaaa'
const RB = '20261201T110000Z-bbbbbbb'

function entry(over: Partial<HistoryEntry>): HistoryEntry {
  return {
    type: 'deploy',
    release: RA,
    commit: A,
    actor: 'octocat',
    status: 'success',
    verified: true,
    started: '',
    finished: '',
    duration_s: 1,
    hosts: ['web-1'],
    ...over
  }
}

const history = [entry({}), entry({ release: RB, commit: B, previous: RA })]

describe('rerunOf', () => {
  test('a commit never deployed: a deploy', () => {
    expect(rerunOf('c'.repeat(40), history, [RA, RB], RB)).toEqual({ kind: 'deploy' })
  })

  test("the current release's commit: a deploy", () => {
    expect(rerunOf(B, history, [RA, RB], RB)).toEqual({ kind: 'deploy' })
    expect(rerunOf(B.toUpperCase(), history, [RA, RB], RB)).toEqual({ kind: 'deploy' })
  })

  test("an older good release's commit, on disk: a rollback to it", () => {
    expect(rerunOf(A, history, [RA, RB], RB)).toEqual({ kind: 'rollback', release: RA })
  })

  test('pruned: refused as gone; marked bad: refused as bad', () => {
    expect(rerunOf(A, history, [RB], RB)).toEqual({ kind: 'refuse', release: RA, why: 'gone' })
    const bad = [
      ...history,
      entry({ type: 'rollback', release: RA, commit: null, from: RB }),
      entry({ release: '20261201T120000Z-ccccccc', commit: 'c'.repeat(40) })
    ]
    expect(rerunOf(B, bad, [RA, RB, '20261201T120000Z-ccccccc'], '20261201T120000Z-ccccccc')).toEqual({
      kind: 'refuse',
      release: RB,
      why: 'bad'
    })
  })

  test('a commit whose deploys all failed: a deploy (a retry)', () => {
    const failed = [entry({ release: RB, commit: B }), entry({ status: 'rolled-back', bad: true })]
    expect(rerunOf(A, failed, [RA, RB], RB)).toEqual({ kind: 'deploy' })
  })

  test('redeployed as a newer release: the newest good one on disk', () => {
    const RA2 = '20261201T115000Z-aaaaaaa'
    const h = [...history, entry({ release: RA2 }), entry({ release: '20261201T120000Z-bbbbbbb', commit: B })]
    expect(rerunOf(A, h, [RA, RB, RA2, '20261201T120000Z-bbbbbbb'], '20261201T120000Z-bbbbbbb')).toEqual({
      kind: 'rollback',
      release: RA2
    })
    // the newer one pruned: the older one serves
    expect(rerunOf(A, h, [RA, RB, '20261201T120000Z-bbbbbbb'], '20261201T120000Z-bbbbbbb')).toEqual({
      kind: 'rollback',
      release: RA
    })
  })
})
