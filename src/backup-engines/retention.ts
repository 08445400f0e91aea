import type { RetentionPolicy } from './config.js'
import { parseBackupFileName } from './name.js'

/**
 * Which backups to keep: the newest backup of each of the last `daily` days, `weekly` ISO weeks and
 * `monthly` months that have a backup (gaps don't use up the allowance), plus the newest backup overall
 * and any protected backup. Everything is UTC and depends only on the names, never on the current time.
 */

/** `<app>_YYYYMMDD_HHMMSS` and its time, from a backup name or a file of one (name.ts has the one pattern). */
const parseName = parseBackupFileName

/** The UTC time in a backup name, or undefined when the name is not a backup (or the date is impossible). */
export function parseBackupTime(name: string): Date | undefined {
  return parseName(name)?.time
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0')

/** ISO 8601 week of a date in UTC, e.g. `2025-W01` (2024-12-30 is 2025-W01, 2021-01-03 is 2020-W53). */
export function isoWeek(d: Date): string {
  if (Number.isNaN(d.getTime())) throw new RangeError('isoWeek: invalid date')
  const day = d.getUTCDay() || 7 // Monday 1 .. Sunday 7
  // The Thursday of this week decides the week-year; week 1 is the week holding the year's first Thursday.
  const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 4 - day)
  const year = new Date(thursday).getUTCFullYear()
  const week = Math.floor((thursday - Date.UTC(year, 0, 1)) / 86_400_000 / 7) + 1
  return `${pad(year, 4)}-W${pad(week)}`
}

const dayOf = (d: Date): string =>
  `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`
const monthOf = (d: Date): string => `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}`

/** Throws on a policy that is not whole numbers >= 0, or that keeps nothing (all three 0). */
export function assertPolicyKeepsSomething(policy: RetentionPolicy): void {
  for (const key of ['daily', 'weekly', 'monthly'] as const) {
    const n: unknown = policy[key]
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
      throw new Error(`retention.${key} must be a whole number >= 0 (got ${String(n)})`)
    }
  }
  if (policy.daily === 0 && policy.weekly === 0 && policy.monthly === 0) {
    throw new Error(
      'a retention policy that keeps nothing is refused: retention.daily, retention.weekly and ' +
        'retention.monthly are all 0, so every backup but the newest would be deleted; ' +
        'set at least one of them above 0'
    )
  }
}

export type RetentionResult = {
  /** Names to keep, oldest first. */
  keep: string[]
  /** Names to delete, oldest first. */
  prune: string[]
  /** Why each kept name is kept, e.g. ['daily 2026-11-21', 'weekly 2026-W47', 'monthly 2026-11', 'newest']. */
  reasons: Record<string, string[]>
}

type BackupSet = { stem: string; time: number; date: Date; names: string[]; reasons: string[] }

/**
 * Splits backup names into keep and prune. Names that are not backups are ignored (in neither list).
 * Artifacts of one backup (`shop_20261121_193000.dump`, `shop_20261121_193000.sha256`, ...) are kept or
 * pruned together. `protect` holds backup names (with or without extensions) that must never be pruned,
 * e.g. the backups that kept releases need for rollback. The newest backup is never pruned either.
 */
export function selectRetention(
  backups: string[],
  policy: RetentionPolicy,
  protect: string[] = []
): RetentionResult {
  assertPolicyKeepsSomething(policy)

  const sets = new Map<string, BackupSet>()
  for (const name of new Set(backups)) {
    const parsed = parseName(name)
    if (!parsed) continue
    let set = sets.get(parsed.stem)
    if (!set) {
      set = { stem: parsed.stem, time: parsed.time.getTime(), date: parsed.time, names: [], reasons: [] }
      sets.set(parsed.stem, set)
    }
    set.names.push(name)
  }

  // Newest first; equal times (different apps) are ordered by name so the result never depends on input order.
  const newestFirst = [...sets.values()].sort((a, b) => b.time - a.time || compare(b.stem, a.stem))

  const rules: [label: string, count: number, bucket: (d: Date) => string][] = [
    ['daily', policy.daily, dayOf],
    ['weekly', policy.weekly, isoWeek],
    ['monthly', policy.monthly, monthOf]
  ]
  for (const [label, count, bucket] of rules) {
    const seen = new Set<string>()
    for (const set of newestFirst) {
      if (seen.size >= count) break
      const key = bucket(set.date)
      if (seen.has(key)) continue // an older backup in a bucket already filled by a newer one
      seen.add(key)
      set.reasons.push(`${label} ${key}`)
    }
  }

  newestFirst[0]?.reasons.push('newest')

  const protectedStems = new Set<string>(protect.map(p => parseName(p)?.stem).filter(s => s !== undefined))
  for (const set of newestFirst) {
    if (protectedStems.has(set.stem)) set.reasons.push('protected')
  }

  const keep: { name: string; time: number }[] = []
  const prune: { name: string; time: number }[] = []
  const reasons: Record<string, string[]> = {}
  for (const set of newestFirst) {
    for (const name of set.names) {
      if (set.reasons.length > 0) {
        keep.push({ name, time: set.time })
        reasons[name] = [...set.reasons]
      } else {
        prune.push({ name, time: set.time })
      }
    }
  }
  const ascending = (list: { name: string; time: number }[]): string[] =>
    list.sort((a, b) => a.time - b.time || compare(a.name, b.name)).map(e => e.name)
  return { keep: ascending(keep), prune: ascending(prune), reasons }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
