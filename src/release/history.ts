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
  /** interrupted: the run was stopped (signal) or killed, and was finished by the Action's post step. */
  status: 'success' | 'rolled-back' | 'failed' | 'interrupted'
  /** The run's target release passed verify and the run succeeded. */
  verified?: boolean
  /** A release that failed verification; automatic and plain rollbacks skip it. */
  bad?: boolean
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
  /**
   * The host that held the lock and ran the backup and the migration: the one entry is written on every host
   * of the run, and `backup`, `revision` and `migrated` speak of what ran on this host only.
   */
  primary?: string
  error?: string | null
}

/**
 * Parses history.jsonl. A torn line (a write cut short) is skipped, but never takes the next entry with it:
 * when a torn line and the next entry ended up on one line (the next append did not start on a new line), the
 * trailing JSON object is recovered.
 */
export function parseHistory(text: string): HistoryEntry[] {
  const out: HistoryEntry[] = []
  for (const line of text.split('\n')) {
    if (!line.trim()) continue
    const v = parseEntry(line)
    if (v) out.push(v)
  }
  return out
}

function asEntry(v: unknown): HistoryEntry | undefined {
  return v && typeof v === 'object' && typeof (v as HistoryEntry).release === 'string'
    ? (v as HistoryEntry)
    : undefined
}

function parseEntry(line: string): HistoryEntry | undefined {
  try {
    return asEntry(JSON.parse(line))
  } catch {
    /* torn: look for the longest trailing object that parses */
  }
  for (let i = line.indexOf('{', 1); i > 0; i = line.indexOf('{', i + 1)) {
    try {
      const v = asEntry(JSON.parse(line.slice(i)))
      if (v) return v
    } catch {
      /* not here */
    }
  }
  return undefined
}

/**
 * Releases history records as verified healthy, each with the position (line order) of the entry that says
 * so: a release whose newest entry (deploy or rollback) that says anything of its health is a success, and
 * that no later entry marks bad or interrupted (a successful rollback away from it marks it bad). A run that
 * failed before anything live changed (`failed`, not `bad`: a refused rollback, a lock held) says nothing of
 * its release. An old success entry without `verified` counts as verified.
 */
export function goodReleases(history: HistoryEntry[]): Map<string, number> {
  const good = new Map<string, number>()
  history.forEach((h, i) => {
    if (h.status === 'success' && h.verified !== false && !h.bad) {
      good.delete(h.release)
      good.set(h.release, i)
    } else if (h.bad || h.status === 'rolled-back' || h.status === 'interrupted') {
      good.delete(h.release)
    }
    // a plain `failed` without `bad` stopped before anything live changed: it says nothing of the release
    if (h.type === 'rollback' && h.status === 'success' && h.from) good.delete(h.from)
  })
  return good
}

/**
 * What a release is, in one word, for `releases`: `verified` (passed its checks in a deploy or a rollback that
 * succeeded), `bad` (failed its checks and was rolled back, or marked bad), `interrupted` (its run was stopped
 * or killed and finished by the post step or the next run), `rolled back from` (a rollback moved away from it
 * after it had served), `unverified` (served without checks passing, e.g. an old entry without `verified`
 * that failed), or `unknown` (no history entry names it). The newest entry that says anything decides; a
 * plain `failed` (nothing live changed) says nothing.
 */
export type ReleaseState = 'verified' | 'bad' | 'interrupted' | 'rolled back from' | 'unverified' | 'unknown'

export function releaseStates(history: HistoryEntry[]): Map<string, ReleaseState> {
  const states = new Map<string, ReleaseState>()
  for (const h of history) {
    if (h.status === 'interrupted') states.set(h.release, 'interrupted')
    else if (h.bad || h.status === 'rolled-back') states.set(h.release, 'bad')
    else if (h.status === 'success') states.set(h.release, h.verified === false ? 'unverified' : 'verified')
    if (h.type === 'rollback' && h.status === 'success' && h.from && states.get(h.from) !== 'bad')
      states.set(h.from, 'rolled back from')
  }
  return states
}

/** History says this release was once finished and served (a release from before completion markers). */
export function everServed(history: HistoryEntry[], release: string): boolean {
  return history.some(h => h.release === release && h.status === 'success')
}

/**
 * The release a plain `rollback` goes to: of the releases history records as verified healthy (goodReleases),
 * the one recorded last, in history order (not by name: release ids come from the runner's clock), that exists
 * on the host and is not `current`. Without history there is no target (name one with --to).
 */
export function rollbackTarget(
  releases: string[],
  current: string | undefined,
  history: HistoryEntry[]
): ReleaseId | undefined {
  const onDisk = new Set<string>(releases.filter(isReleaseId))
  let best: { r: ReleaseId; at: number } | undefined
  for (const [r, at] of goodReleases(history)) {
    if (r === current || !onDisk.has(r) || !isReleaseId(r)) continue
    if (!best || at > best.at) best = { r, at }
  }
  return best?.r
}

/**
 * Releases a run left half-made (a deploy killed during its upload or build): no completion marker, not
 * `current`, and history never saw them serve. The next deploy removes them; rollbacks never choose them.
 * Without any history nothing is called unfinished: a release from before completion markers looks the same.
 */
export function unfinishedReleases(
  releases: string[],
  complete: string[],
  current: string | undefined,
  history: HistoryEntry[]
): string[] {
  // no history at all (deleted, or never written): nothing tells a half-made release from an old one
  if (!history.length) return []
  const done = new Set(complete)
  return releases.filter(isReleaseId).filter(r => r !== current && !done.has(r) && !everServed(history, r))
}

/** Which releases to delete: all but the newest `keep`, never `current` nor `previous`. */
export function releasesToPrune(releases: string[], keep: number, protect: (string | undefined)[]): string[] {
  const sorted = releases.filter(isReleaseId).sort()
  const kept = new Set<string>(sorted.slice(-keep))
  for (const p of protect) if (p) kept.add(p)
  return sorted.filter(r => !kept.has(r))
}

/** What deploying `commit` again means (a CI re-run of an old deploy job): see `rerunOf`. */
export type Rerun =
  | { kind: 'deploy' }
  | { kind: 'rollback'; release: ReleaseId }
  | { kind: 'refuse'; release: string; why: 'gone' | 'bad' }

/**
 * Deploying a commit that history has as an older release: a rollback to the newest such release that is good
 * (goodReleases) and on disk; a refusal when every such release is bad or gone (`why` of the newest); a
 * normal deploy when the commit was never deployed with success, or is the current release's commit.
 */
export function rerunOf(
  commit: string,
  history: HistoryEntry[],
  releases: string[],
  current: string | undefined
): Rerun {
  const same = (c: string | null | undefined) => !!c && c.toLowerCase() === commit.toLowerCase()
  const ofCommit = history.filter(h => h.type === 'deploy' && same(h.commit) && h.status === 'success')
  if (!ofCommit.length) return { kind: 'deploy' }
  const currentEntry = [...history].reverse().find(h => h.type === 'deploy' && h.release === current)
  if (current && (same(currentEntry?.commit) || ofCommit.some(h => h.release === current)))
    return { kind: 'deploy' }
  const good = goodReleases(history)
  const onDisk = new Set(releases)
  const candidates = [...new Set(ofCommit.map(h => h.release).reverse())]
  const usable = candidates.find(r => good.has(r) && onDisk.has(r) && isReleaseId(r))
  if (usable && isReleaseId(usable)) return { kind: 'rollback', release: usable }
  const newest = candidates[0] as string
  return { kind: 'refuse', release: newest, why: onDisk.has(newest) ? 'bad' : 'gone' }
}
