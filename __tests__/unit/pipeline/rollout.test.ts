import { rolloutBatches } from '../../../src/pipeline/rollout.js'

const hosts = (n: number, primary = 0) =>
  Array.from({ length: n }, (_, i) => ({ name: `h${i + 1}`, primary: i === primary }))

describe('rolloutBatches', () => {
  test('without rollout: one batch of every host', () => {
    expect(rolloutBatches(hosts(3), undefined)).toEqual([['h1', 'h2', 'h3']])
  })

  test('a number: batches of that many, the last one what is left', () => {
    expect(rolloutBatches(hosts(5), { batch: 2, wait: 0 })).toEqual([['h1', 'h2'], ['h3', 'h4'], ['h5']])
  })

  test('a share of the hosts, rounded up, at least 1', () => {
    expect(rolloutBatches(hosts(6), { batch: '25%', wait: 0 })).toEqual([
      ['h1', 'h2'],
      ['h3', 'h4'],
      ['h5', 'h6']
    ])
    expect(rolloutBatches(hosts(3), { batch: '1%', wait: 0 })).toEqual([['h1'], ['h2'], ['h3']])
  })

  test('a ramp: each size in turn, the last one repeating', () => {
    expect(rolloutBatches(hosts(4), { batch: [1, '50%'], wait: 0 })).toEqual([['h1'], ['h2', 'h3'], ['h4']])
    expect(rolloutBatches(hosts(7), { batch: [1, 2], wait: 0 })).toEqual([
      ['h1'],
      ['h2', 'h3'],
      ['h4', 'h5'],
      ['h6', 'h7']
    ])
  })

  test('the primary goes first, the others keep config order', () => {
    expect(rolloutBatches(hosts(4, 2), { batch: 2, wait: 0 })).toEqual([
      ['h3', 'h1'],
      ['h2', 'h4']
    ])
  })
})
