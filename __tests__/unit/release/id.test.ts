import { describe, expect, test } from '@jest/globals'
import { ConfigError, ExitCode } from '../../../src/core/exit.js'
import { isReleaseId, newReleaseId, parseReleaseId } from '../../../src/release/id.js'

const NOW = new Date('2026-11-21T19:30:00.123Z')

describe('newReleaseId', () => {
  test('UTC time + the short commit, lower case', () => {
    expect(newReleaseId(NOW, '3f2a1c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7')).toBe('20261121T193000Z-3f2a1c9')
    expect(newReleaseId(NOW, '3F2A1C9')).toBe('20261121T193000Z-3f2a1c9')
  })

  test('`local` when there is no usable commit', () => {
    expect(newReleaseId(NOW, undefined)).toBe('20261121T193000Z-local')
    expect(newReleaseId(NOW, '')).toBe('20261121T193000Z-local')
    expect(newReleaseId(NOW, 'abc12')).toBe('20261121T193000Z-local')
    expect(newReleaseId(NOW, 'main')).toBe('20261121T193000Z-local')
    expect(newReleaseId(NOW, '3f2a1c9; rm -rf /')).toBe('20261121T193000Z-local')
  })

  test('the time is UTC whatever the local zone, with zero padding', () => {
    expect(newReleaseId(new Date(Date.UTC(2027, 0, 2, 3, 4, 5)), undefined)).toBe('20270102T030405Z-local')
  })

  test('ids sort by time', () => {
    const a = newReleaseId(new Date('2026-11-21T19:30:00Z'), 'fffffff')
    const b = newReleaseId(new Date('2026-11-21T19:30:01Z'), '0000000')
    expect([b, a].sort()).toEqual([a, b])
  })

  test('what it makes, isReleaseId accepts', () => {
    expect(isReleaseId(newReleaseId(NOW, undefined))).toBe(true)
    expect(isReleaseId(newReleaseId(NOW, 'deadbeef'))).toBe(true)
  })
})

describe('isReleaseId', () => {
  test.each(['20261121T193000Z-3f2a1c9', '20261121T193000Z-local', '20261121T193000Z-A'])('%s is one', v => {
    expect(isReleaseId(v)).toBe(true)
  })
  test.each([
    '',
    'current',
    '.current.20261121T193000Z-local.tmp',
    '20261121T193000Z',
    '20261121T193000Z-',
    '20261121T1930Z-local',
    '20261121-193000Z-local',
    '20261121T193000Z-local/..',
    '../20261121T193000Z-local',
    '20261121T193000Z-a b',
    '20261121T193000Z-x\n',
    ` 20261121T193000Z-local`
  ])('%j is not', v => {
    expect(isReleaseId(v)).toBe(false)
  })
})

describe('parseReleaseId', () => {
  test('returns a valid id unchanged', () => {
    expect(parseReleaseId('20261121T193000Z-3f2a1c9')).toBe('20261121T193000Z-3f2a1c9')
  })

  test('bad input is a ConfigError (exit 2) that shows the expected form', () => {
    let err: unknown
    try {
      parseReleaseId('yesterday', '--to')
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).exitCode).toBe(ExitCode.badInput)
    expect((err as ConfigError).message).toBe(
      '--to "yesterday" is not a release name; expected the form 20261121T193000Z-3f2a1c9 (see `safe-deploy releases`)'
    )
    expect(() => parseReleaseId('../x')).toThrow(
      /^release "\.\.\/x" is not a release name; expected the form 20261121T193000Z-3f2a1c9/
    )
  })
})
