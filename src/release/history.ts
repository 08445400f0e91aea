import type { ReleaseId } from './id.js'
import { isReleaseId } from './id.js'

/** One line of .safe-deploy/history.jsonl. */
export interface HistoryEntry {
  type: 'deploy' | 'rollback'
  release: string
  previous?: string | null
  /** For a rollback: the release it left. */
  from?: string | null
  commit?: string | null
  actor: string
  run?: string | null
  status: 'success' | 'rolled-back' | 'failed'
  /** A release that failed verification; automatic and plain rollbacks skip it. */
  bad?: boolean
  /** The run's target release passed verify and the run succeeded. */
  verified?: boolean
  backup?: string | null
  /** The database revision before this deploy migrated (stages.migrate.revision). */
  revision?: string | null
  /** This deploy ran a migration. */
  migrated?: boolean
  /** What the rollback did to the database: restored, down, left, failed. */
  database?: string | null
  /** blue-green: the port the release serves on. */
  port?: number | null
  started: string
  finished: string
  duration_s: number
  hosts: string[]
  error?: string | null
}

export function parseHistory(text: string): HistoryEntry[] {
  const out: HistoryEntry[] = []
  for (const line of text.split('\n')) {
    if (!line.trim()) continue
    try {
      const v = JSON.parse(line) as HistoryEntry
      if (v && typeof v === 'object' && typeof v.release === 'string') out.push(v)
    } catch {
      /* a torn line from an interrupted write: skip it */
    }
  }
  return out
}

/** Releases a person or a failed verify has marked bad. */
export function badReleases(history: HistoryEntry[]): Set<string> {
  const bad = new Set<string>()
  for (const h of history) {
    if (h.type === 'deploy' && (h.bad || h.status === 'rolled-back')) bad.add(h.release)
    if (h.type === 'rollback' && h.status === 'success' && h.from) bad.add(h.from)
  }
  return bad
}

/**
 * The release a plain `rollback` goes to: the newest release older than `current` that exists on the host
 * and is not marked bad.
 */
export function rollbackTarget(
  releases: string[],
  current: string | undefined,
  history: HistoryEntry[]
): ReleaseId | undefined {
  const bad = badReleases(history)
  const sorted = releases.filter(isReleaseId).sort()
  const older = current ? sorted.filter(r => r < current) : sorted
  for (let i = older.length - 1; i >= 0; i--) {
    const r = older[i] as ReleaseId
    if (!bad.has(r)) return r
  }
  return undefined
}

/** Which releases to delete: all but the newest `keep`, never `current` nor `previous`. */
export function releasesToPrune(releases: string[], keep: number, protect: (string | undefined)[]): string[] {
  const sorted = releases.filter(isReleaseId).sort()
  const kept = new Set<string>(sorted.slice(-keep))
  for (const p of protect) if (p) kept.add(p)
  return sorted.filter(r => !kept.has(r))
}
