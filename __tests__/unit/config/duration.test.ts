import { describe, expect, test } from '@jest/globals'
import { parseDuration } from '../../../src/config/duration.js'

describe('parseDuration', () => {
  test.each([
    ['500ms', 500],
    ['10s', 10_000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1s', 1000],
    ['1.5s', 1500],
    ['0.25m', 15_000],
    ['7', 7000],
    ['0', 0],
    [' 2m ', 120_000],
    ['3 h', 10_800_000],
    ['1.0005s', 1001]
  ])('%j is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms)
  })

  test('a number is seconds', () => {
    expect(parseDuration(3)).toBe(3000)
    expect(parseDuration(0.5)).toBe(500)
    expect(parseDuration(0)).toBe(0)
  })

  test.each(['1x', '', ' ', '-1s', '1d', '10 minutes', 's', '1e3', '1,5s', '1s2', 'ms', '1 s s', '0x10'])(
    '%j is not a duration',
    text => {
      expect(parseDuration(text)).toBeUndefined()
    }
  )

  test('negative and non-finite numbers are not durations', () => {
    expect(parseDuration(-1)).toBeUndefined()
    expect(parseDuration(Number.NaN)).toBeUndefined()
    expect(parseDuration(Number.POSITIVE_INFINITY)).toBeUndefined()
  })
})
