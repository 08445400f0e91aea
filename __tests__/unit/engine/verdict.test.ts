import { describe, expect, test } from '@jest/globals'
import { verdict } from '../../../src/engine/lifecycle.js'
import type { Outcome } from '../../../src/pipeline/orchestrator.js'

const failed = (message: string, extra: Partial<Outcome> = {}): Outcome => ({
  records: [],
  failure: { stage: 'choose', host: 'web-1', message },
  rolledBack: false,
  exitCode: 3,
  ...extra
})

describe('verdict', () => {
  test('one period after a failure message, whether or not it ends with one', () => {
    expect(verdict('rollback', failed('pass --no-db to keep the database as it is.'), 1.23, undefined)).toBe(
      'ROLLBACK FAILED at choose on web-1: pass --no-db to keep the database as it is. Nothing live was changed (1.2 s)'
    )
    expect(verdict('deploy', failed('exit 1'), 2, undefined)).toBe(
      'DEPLOYMENT FAILED at choose on web-1: exit 1. Nothing live was changed (2.0 s)'
    )
  })

  test('success and rolled back', () => {
    expect(verdict('deploy', { records: [], rolledBack: false, exitCode: 0 }, 3, undefined)).toBe(
      'DEPLOYMENT SUCCESS (3.0 s)'
    )
    expect(verdict('deploy', failed('no answer.', { rolledBack: true, exitCode: 4 }), 3, 'r1')).toBe(
      'DEPLOYMENT FAILED at choose on web-1: no answer. ROLLED BACK (3.0 s)'
    )
  })
})
