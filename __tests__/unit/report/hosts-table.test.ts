import { describe, expect, test } from '@jest/globals'
import { failedHosts, hostTable } from '../../../src/report/hosts.js'
import { outputsOf } from '../../../src/platform/outputs.js'
import type { HostResult, RunResult } from '../../../src/pipeline/result.js'

const rows: HostResult[] = [
  {
    name: 'web-1',
    roles: ['web'],
    before: '20261201T100000Z-aaaaaaa',
    after: '20261201T110000Z-bbbbbbb',
    stage: 'cleanup',
    durationS: 12.34,
    result: 'ok'
  },
  {
    name: 'worker-1',
    roles: ['worker', 'cron'],
    before: '20261201T100000Z-aaaaaaa',
    stage: 'preflight',
    durationS: 0,
    result: 'skipped',
    error: 'unreachable: connect ECONNREFUSED 127.0.0.3:22\nmore detail'
  }
]

describe('the per-host table', () => {
  test('a header and one row per host: roles, before → after, stage, time, result, the error excerpt', () => {
    expect(hostTable(rows)).toEqual([
      'host      roles        release before → after                               stage        time  result   error',
      'web-1     web          20261201T100000Z-aaaaaaa → 20261201T110000Z-bbbbbbb  cleanup    12.3 s  ok',
      'worker-1  worker,cron  20261201T100000Z-aaaaaaa → (none)                    preflight   0.0 s  skipped  unreachable: connect ECONNREFUSED 127.0.0.3:22 … more detail'
    ])
  })

  test('a long error is cut to one line of 100 characters', () => {
    const [, row] = hostTable([{ ...rows[0], result: 'failed', error: `x${'y'.repeat(300)}` } as HostResult])
    expect(row?.endsWith(`x${'y'.repeat(98)}…`)).toBe(true)
  })

  test('failed hosts: those with an error of their own', () => {
    expect(failedHosts(rows)).toEqual(['worker-1'])
    expect(failedHosts([rows[0] as HostResult])).toEqual([])
  })

  test('outputs: failed-hosts as a comma list, hosts-json as compact JSON', () => {
    const r = {
      status: 'success',
      exitCode: 0,
      rolledBack: false,
      durationS: 1,
      hostResults: rows
    } as RunResult
    const o = outputsOf(r)
    expect(o['failed-hosts']).toBe('worker-1')
    expect(JSON.parse(o['hosts-json'] ?? '')).toEqual(rows)
    expect(o['hosts-json']).not.toContain('\n')
    expect(outputsOf({ ...r, hostResults: undefined })['failed-hosts']).toBe('')
  })
})
