import { describe, expect, jest, test } from '@jest/globals'
import {
  assertPolicyKeepsSomething,
  isoWeek,
  parseBackupTime,
  selectRetention
} from '../../../src/backup-engines/retention.js'
import type { RetentionPolicy } from '../../../src/backup-engines/config.js'

/** `2026-11-21T19:30:00Z` -> `shop_20261121_193000` (written without the module's code). */
function name(iso: string, app = 'shop', ext = ''): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/.exec(iso)
  if (!m) throw new Error(`bad test timestamp ${iso}`)
  return `${app}_${m[1]}${m[2]}${m[3]}_${m[4]}${m[5]}${m[6]}${ext}`
}

const at = (ms: number, app = 'shop'): string =>
  name(new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'), app)

const policy = (daily: number, weekly: number, monthly: number): RetentionPolicy => ({
  daily,
  weekly,
  monthly
})

/** Deterministic shuffle so tests also show the result does not depend on input order. */
function shuffled<T>(items: T[], seed = 7): T[] {
  const out = [...items]
  let s = seed
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648
    const j = s % (i + 1)
    ;[out[i], out[j]] = [out[j] as T, out[i] as T]
  }
  return out
}

/**
 * Independent brute force: for every backup, it is kept iff it is the newest of its bucket and its bucket is
 * among the N most recent buckets that contain a backup (for days, weeks and months), or it is the newest
 * overall. Weeks are identified by the date of their Monday, with no ISO week-year arithmetic at all.
 */
function bruteForce(times: number[], p: RetentionPolicy): Set<number> {
  const dayKey = (t: number): string => new Date(t).toISOString().slice(0, 10)
  const monthKey = (t: number): string => new Date(t).toISOString().slice(0, 7)
  const mondayKey = (t: number): string => {
    const d = new Date(t)
    const sinceMonday = (d.getUTCDay() + 6) % 7
    return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - sinceMonday))
      .toISOString()
      .slice(0, 10)
  }
  const kept = new Set<number>([Math.max(...times)])
  for (const [n, key] of [
    [p.daily, dayKey],
    [p.weekly, mondayKey],
    [p.monthly, monthKey]
  ] as const) {
    const buckets = [...new Set(times.map(key))].sort().reverse().slice(0, n)
    for (const bucket of buckets) kept.add(Math.max(...times.filter(t => key(t) === bucket)))
  }
  return kept
}

describe('parseBackupTime', () => {
  test('reads the UTC timestamp at the end of the name', () => {
    expect(parseBackupTime('shop_20261121_193000')).toEqual(new Date(Date.UTC(2026, 10, 21, 19, 30, 0)))
    expect(parseBackupTime('a_19991231_235959')).toEqual(new Date(Date.UTC(1999, 11, 31, 23, 59, 59)))
  })

  test('strips extensions and allows underscores, dots and dashes in the app name', () => {
    const t = new Date(Date.UTC(2026, 10, 21, 19, 30, 0))
    for (const n of [
      'my_app_20261121_193000.dump',
      'my_app_20261121_193000.sql.gz',
      'my_app_20261121_193000.files.tar.gz.age',
      'my_app_20261121_193000.sha256',
      'my.app-2_20261121_193000.tar.gz',
      // the app name itself may look like a backup: the timestamp is the last one
      'old_20200101_000000_20261121_193000.dump'
    ]) {
      expect([n, parseBackupTime(n)]).toEqual([n, t])
    }
  })

  test('is undefined for names that are not backups', () => {
    for (const n of [
      'shop_20250230_120000', // 30 February
      'shop_20250229_120000', // 2025 is not a leap year
      'shop_20261131_120000', // 31 November
      'shop_20261321_120000', // month 13
      'shop_20261100_120000', // day 0
      'shop_20261121_240000', // hour 24
      'shop_20261121_126000', // minute 60
      'shop_20261121_120060', // second 60
      'shop_00500101_000000', // Date.UTC would read year 50 as 1950
      'shop_20261121_1930', // short time
      'shop_2026112_193000',
      'shop_20261121_193000x',
      'shop_20261121_193000.', // empty extension
      'shop_20261121_193000.tar.gz.tmp/x',
      '_20261121_193000', // no app
      '.shop_20261121_193000', // app must start with a letter or digit
      '-shop_20261121_193000',
      'shop 20261121_193000',
      'shop-20261121-193000',
      `${'a'.repeat(65)}_20261121_193000`, // app name longer than 64
      'README.md',
      'lost+found',
      ''
    ]) {
      expect([n, parseBackupTime(n)]).toEqual([n, undefined])
    }
    expect(parseBackupTime('shop_20240229_120000')).toEqual(new Date(Date.UTC(2024, 1, 29, 12)))
    expect(parseBackupTime(`${'a'.repeat(64)}_20261121_193000`)).toBeInstanceOf(Date)
  })
})

describe('isoWeek', () => {
  test.each([
    ['2024-12-29T23:59:59Z', '2024-W52'],
    ['2024-12-30T00:00:00Z', '2025-W01'],
    ['2024-12-31T12:00:00Z', '2025-W01'],
    ['2025-01-05T23:59:59Z', '2025-W01'],
    ['2025-01-06T00:00:00Z', '2025-W02'],
    ['2020-12-31T00:00:00Z', '2020-W53'],
    ['2021-01-03T23:59:59Z', '2020-W53'],
    ['2021-01-04T00:00:00Z', '2021-W01'],
    ['2015-12-31T00:00:00Z', '2015-W53'],
    ['2016-01-03T00:00:00Z', '2015-W53'],
    ['2026-01-01T00:00:00Z', '2026-W01'],
    ['2025-12-29T00:00:00Z', '2026-W01'],
    ['2026-11-21T19:30:00Z', '2026-W47'],
    ['2026-12-31T00:00:00Z', '2026-W53']
  ])('%s is %s', (iso, week) => {
    expect(isoWeek(new Date(iso))).toBe(week)
  })

  test('refuses an invalid date', () => {
    expect(() => isoWeek(new Date(NaN))).toThrow(RangeError)
  })
})

describe('assertPolicyKeepsSomething', () => {
  test('refuses a policy of all zeros, in selectRetention too', () => {
    expect(() => assertPolicyKeepsSomething(policy(0, 0, 0))).toThrow(
      /^a retention policy that keeps nothing is refused: /
    )
    expect(() => selectRetention([name('2026-11-21T19:30:00Z')], policy(0, 0, 0))).toThrow(
      /keeps nothing is refused/
    )
    expect(() => selectRetention([], policy(0, 0, 0))).toThrow(/keeps nothing is refused/)
  })

  test('accepts any policy that keeps something', () => {
    expect(() => assertPolicyKeepsSomething(policy(1, 0, 0))).not.toThrow()
    expect(() => assertPolicyKeepsSomething(policy(0, 1, 0))).not.toThrow()
    expect(() => assertPolicyKeepsSomething(policy(0, 0, 1))).not.toThrow()
    expect(() => assertPolicyKeepsSomething(policy(7, 4, 12))).not.toThrow()
  })

  test('refuses negative or fractional counts', () => {
    expect(() => assertPolicyKeepsSomething(policy(-1, 4, 12))).toThrow(/retention\.daily/)
    expect(() => assertPolicyKeepsSomething(policy(7, 1.5, 12))).toThrow(/retention\.weekly/)
    expect(() => assertPolicyKeepsSomething(policy(7, 4, NaN))).toThrow(/retention\.monthly/)
  })
})

describe('selectRetention', () => {
  test('several backups a day: only the newest of each day is kept as daily', () => {
    const backups = [
      '2026-11-19T01:00:00Z',
      '2026-11-19T13:00:00Z',
      '2026-11-19T23:59:59Z',
      '2026-11-20T00:00:00Z',
      '2026-11-20T06:00:00Z',
      '2026-11-21T08:00:00Z',
      '2026-11-21T19:30:00Z'
    ].map(t => name(t))
    const r = selectRetention(shuffled(backups), policy(2, 0, 0))
    expect(r.keep).toEqual(['shop_20261120_060000', 'shop_20261121_193000'])
    expect(r.prune).toEqual([
      'shop_20261119_010000',
      'shop_20261119_130000',
      'shop_20261119_235959',
      'shop_20261120_000000',
      'shop_20261121_080000'
    ])
    expect(r.reasons).toEqual({
      shop_20261120_060000: ['daily 2026-11-20'],
      shop_20261121_193000: ['daily 2026-11-21', 'newest']
    })
  })

  test('a backup fills every bucket it is the newest of', () => {
    const r = selectRetention([name('2026-11-20T10:00:00Z'), name('2026-11-21T19:30:00Z')], policy(7, 4, 12))
    expect(r.reasons).toEqual({
      shop_20261120_100000: ['daily 2026-11-20'],
      shop_20261121_193000: ['daily 2026-11-21', 'weekly 2026-W47', 'monthly 2026-11', 'newest']
    })
    expect(r.prune).toEqual([])
  })

  test('days without backups do not count against daily: 7', () => {
    const days = ['2026-10-02', '2026-10-20', '2026-11-01', '2026-11-03', '2026-11-10', '2026-11-11']
    const more = ['2026-11-20', '2026-11-28', '2026-11-30']
    const backups = [...days, ...more].map(d => name(`${d}T03:00:00Z`))
    const r = selectRetention(backups, policy(7, 0, 0))
    // the 7 newest days that have a backup, although they span a month of calendar days
    expect(r.keep).toEqual(backups.slice(2))
    expect(r.prune).toEqual(['shop_20261002_030000', 'shop_20261020_030000'])
  })

  test('ISO week boundary: 2024-12-30 is in 2025-W01 with 2024-12-31, not with 2024-12-29', () => {
    const backups = ['2024-12-29T12:00:00Z', '2024-12-30T12:00:00Z', '2024-12-31T12:00:00Z'].map(t => name(t))
    const r = selectRetention(backups, policy(0, 2, 0))
    expect(r.keep).toEqual(['shop_20241229_120000', 'shop_20241231_120000'])
    expect(r.prune).toEqual(['shop_20241230_120000'])
    expect(r.reasons['shop_20241229_120000']).toEqual(['weekly 2024-W52'])
    expect(r.reasons['shop_20241231_120000']).toEqual(['weekly 2025-W01', 'newest'])
  })

  test('ISO week boundary: 2021-01-03 is in 2020-W53 with 2020-12-28', () => {
    const backups = [
      '2020-12-27T12:00:00Z',
      '2020-12-28T12:00:00Z',
      '2021-01-03T12:00:00Z',
      '2021-01-04T12:00:00Z'
    ]
    const r = selectRetention(
      backups.map(t => name(t)),
      policy(0, 2, 0)
    )
    expect(r.keep).toEqual(['shop_20210103_120000', 'shop_20210104_120000'])
    expect(r.prune).toEqual(['shop_20201227_120000', 'shop_20201228_120000'])
    expect(r.reasons['shop_20210103_120000']).toEqual(['weekly 2020-W53'])
    expect(r.reasons['shop_20210104_120000']).toEqual(['weekly 2021-W01', 'newest'])
  })

  test('year end: Dec 31 and Jan 1 share an ISO week but not a month or a year', () => {
    const backups = [name('2025-12-31T23:00:00Z'), name('2026-01-01T01:00:00Z')]
    const weekly = selectRetention(backups, policy(0, 1, 0))
    expect(weekly.keep).toEqual(['shop_20260101_010000'])
    expect(weekly.prune).toEqual(['shop_20251231_230000'])
    expect(weekly.reasons).toEqual({ shop_20260101_010000: ['weekly 2026-W01', 'newest'] })

    const monthly = selectRetention(backups, policy(0, 1, 2))
    expect(monthly.keep).toEqual(backups)
    expect(monthly.reasons).toEqual({
      shop_20251231_230000: ['monthly 2025-12'],
      shop_20260101_010000: ['weekly 2026-W01', 'monthly 2026-01', 'newest']
    })

    const daily = selectRetention(backups, policy(2, 0, 0))
    expect(daily.reasons['shop_20251231_230000']).toEqual(['daily 2025-12-31'])
  })

  test('monthly across a year boundary keeps the newest of each of the last N months with a backup', () => {
    const backups = [
      '2025-10-31T23:00:00Z',
      '2025-11-01T00:00:00Z',
      '2025-11-30T22:00:00Z',
      '2025-12-01T00:00:00Z',
      '2025-12-31T23:59:59Z',
      // no backups in January
      '2026-02-01T00:00:00Z',
      '2026-02-14T08:00:00Z'
    ].map(t => name(t))
    const r = selectRetention(shuffled(backups, 3), policy(0, 0, 3))
    expect(r.keep).toEqual(['shop_20251130_220000', 'shop_20251231_235959', 'shop_20260214_080000'])
    expect(r.prune).toEqual([
      'shop_20251031_230000',
      'shop_20251101_000000',
      'shop_20251201_000000',
      'shop_20260201_000000'
    ])
    expect(r.reasons).toEqual({
      shop_20251130_220000: ['monthly 2025-11'],
      shop_20251231_235959: ['monthly 2025-12'],
      shop_20260214_080000: ['monthly 2026-02', 'newest']
    })
  })

  test('the default policy {7, 4, 12} over a year of one backup every 6 hours', () => {
    const start = Date.UTC(2025, 0, 1)
    const times: number[] = []
    for (let t = start; t < Date.UTC(2026, 0, 1); t += 6 * 3600_000) times.push(t)
    expect(times).toHaveLength(365 * 4)
    const backups = times.map(t => at(t))

    const r = selectRetention(shuffled(backups), policy(7, 4, 12))

    // By hand: 7 days (Dec 25-31) + weeks ending Sun Dec 21 and Dec 14 (the weeks of Dec 22 and Dec 29 are
    // already daily) + the last day of Jan..Nov (December's is daily) = 7 + 2 + 11 = 20, all at 18:00.
    expect(r.keep).toHaveLength(20)
    const expected = [...bruteForce(times, policy(7, 4, 12))].sort((a, b) => a - b).map(t => at(t))
    expect(r.keep).toEqual(expected)
    expect(r.keep.every(n => n.endsWith('_180000'))).toBe(true)
    expect(r.prune).toHaveLength(365 * 4 - 20)
    expect(new Set([...r.keep, ...r.prune]).size).toBe(365 * 4)
    expect(r.reasons['shop_20251214_180000']).toEqual(['weekly 2025-W50'])
    expect(r.reasons['shop_20250131_180000']).toEqual(['monthly 2025-01'])
    expect(r.reasons['shop_20251231_180000']).toEqual([
      'daily 2025-12-31',
      'weekly 2026-W01',
      'monthly 2025-12',
      'newest'
    ])
  })

  test('matches the brute force on irregular series with gaps for many policies', () => {
    let seed = 12345
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    }
    for (let round = 0; round < 40; round++) {
      const times = new Set<number>()
      let t = Date.UTC(2019 + rand(6), rand(12), 1 + rand(28), rand(24), rand(60), rand(60))
      const count = 1 + rand(120)
      for (let i = 0; i < count; i++) {
        times.add(t)
        // mostly hours apart, sometimes weeks or months of silence
        t += [60_000, 3600_000 * (1 + rand(30)), 86_400_000 * (1 + rand(60))][rand(3)] ?? 0
      }
      const p = policy(rand(9), rand(6), rand(14))
      if (p.daily + p.weekly + p.monthly === 0) p.daily = 1
      const list = [...times]
      const r = selectRetention(shuffled(list.map(x => at(x))), p)
      const expected = [...bruteForce(list, p)].sort((a, b) => a - b).map(x => at(x))
      expect([round, p, r.keep]).toEqual([round, p, expected])
      expect(r.keep.length + r.prune.length).toBe(list.length)
    }
  })

  test('protected backups and the newest survive {daily: 1, weekly: 0, monthly: 0}', () => {
    const backups = [
      '2026-11-01T10:00:00Z',
      '2026-11-05T10:00:00Z',
      '2026-11-10T10:00:00Z',
      '2026-11-21T08:00:00Z',
      '2026-11-21T19:30:00Z'
    ].map(t => name(t))
    const unprotected = selectRetention(backups, policy(1, 0, 0))
    expect(unprotected.keep).toEqual(['shop_20261121_193000'])
    expect(unprotected.reasons).toEqual({ shop_20261121_193000: ['daily 2026-11-21', 'newest'] })

    const r = selectRetention(backups, policy(1, 0, 0), [
      'shop_20261101_100000',
      'shop_20261110_100000.dump', // a protected backup may be named by one of its artifacts
      'shop_20261121_193000',
      'shop_20261001_000000', // protecting a backup that no longer exists is harmless
      'not a backup'
    ])
    expect(r.keep).toEqual(['shop_20261101_100000', 'shop_20261110_100000', 'shop_20261121_193000'])
    expect(r.prune).toEqual(['shop_20261105_100000', 'shop_20261121_080000'])
    expect(r.reasons).toEqual({
      shop_20261101_100000: ['protected'],
      shop_20261110_100000: ['protected'],
      shop_20261121_193000: ['daily 2026-11-21', 'newest', 'protected']
    })
  })

  test('equal times (two apps in one directory) are ordered by name, whatever the input order', () => {
    const backups = [name('2026-11-21T19:30:00Z', 'alpha'), name('2026-11-21T19:30:00Z', 'beta')]
    const a = selectRetention(backups, policy(0, 1, 0))
    const b = selectRetention([...backups].reverse(), policy(0, 1, 0))
    expect(a).toEqual(b)
    expect(a.keep).toEqual(['beta_20261121_193000'])
    expect(a.prune).toEqual(['alpha_20261121_193000'])
  })

  test('ignores names that are not backups', () => {
    const backups = [
      'README.md',
      'shop_20250230_120000', // impossible date
      'shop_20261121_1930',
      '.shop_20261120_120000',
      'lost+found',
      name('2026-11-20T12:00:00Z'),
      name('2026-11-21T12:00:00Z')
    ]
    const r = selectRetention(backups, policy(1, 0, 0))
    expect(r.keep).toEqual(['shop_20261121_120000'])
    expect(r.prune).toEqual(['shop_20261120_120000'])
    expect(Object.keys(r.reasons)).toEqual(['shop_20261121_120000'])
    expect(selectRetention(['README.md', 'tmp'], policy(7, 4, 12))).toEqual({
      keep: [],
      prune: [],
      reasons: {}
    })
    expect(selectRetention([], policy(7, 4, 12))).toEqual({ keep: [], prune: [], reasons: {} })
  })

  test('names with extensions and underscores in the app name; artifacts of one backup share its fate', () => {
    const backups = [
      'my_app_20261120_193000.dump',
      'my_app_20261120_193000.files.tar.gz.age',
      'my_app_20261120_193000.sha256',
      'my_app_20261121_193000.dump',
      'my_app_20261121_193000.sql.gz',
      'my_app_20261121_193000.sha256',
      'my_app_20261121_080000.tar.gz',
      'my_app_20261121_193000.dump' // listed twice
    ]
    const r = selectRetention(shuffled(backups), policy(2, 0, 0))
    expect(r.keep).toEqual([
      'my_app_20261120_193000.dump',
      'my_app_20261120_193000.files.tar.gz.age',
      'my_app_20261120_193000.sha256',
      'my_app_20261121_193000.dump',
      'my_app_20261121_193000.sha256',
      'my_app_20261121_193000.sql.gz'
    ])
    expect(r.prune).toEqual(['my_app_20261121_080000.tar.gz'])
    expect(r.reasons['my_app_20261120_193000.sha256']).toEqual(['daily 2026-11-20'])
    expect(r.reasons['my_app_20261121_193000.sql.gz']).toEqual(['daily 2026-11-21', 'newest'])

    const one = selectRetention(backups, policy(1, 0, 0))
    expect(one.prune).toEqual([
      'my_app_20261120_193000.dump',
      'my_app_20261120_193000.files.tar.gz.age',
      'my_app_20261120_193000.sha256',
      'my_app_20261121_080000.tar.gz'
    ])
  })

  test('does not depend on the current time', () => {
    const backups = ['2001-02-03T04:05:06Z', '2001-02-04T04:05:06Z'].map(t => name(t))
    try {
      jest.useFakeTimers({ now: Date.UTC(2099, 0, 1) })
      const later = selectRetention(backups, policy(2, 0, 0))
      jest.setSystemTime(Date.UTC(2001, 1, 4, 5))
      const sooner = selectRetention(backups, policy(2, 0, 0))
      expect(later).toEqual(sooner)
      expect(later.keep).toEqual(backups)
    } finally {
      jest.useRealTimers()
    }
  })
})
