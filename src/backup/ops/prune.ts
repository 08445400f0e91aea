import { listReleases, parseKeyValues, readHistory } from '../../commands/release.js'
import { parseHistory, type HistoryEntry } from '../../release/history.js'
import { runOn, type HostSession, type RunContext } from '../../host/context.js'
import type { BackupPlan } from '../../backup-engines/plan.js'
import { selectRetention } from '../../backup-engines/retention.js'
import { pruneScript } from '../script.js'
import { listBackups } from './list.js'

/** Backups that kept releases need for their rollback: the backup taken before each one's deploy. */
function protectedBackups(history: HistoryEntry[], keptReleases: string[]): string[] {
  const kept = new Set(keptReleases)
  return history
    .filter(h => h.type === 'deploy' && h.backup && kept.has(h.release))
    .map(h => h.backup as string)
}

export interface PruneResult {
  keep: string[]
  prune: string[]
  reasons: Record<string, string[]>
  /** Files (and leftover temp dirs) actually removed; empty for a dry run. */
  removed: string[]
  /** Leftover temp dirs that would be or were removed. */
  temps: string[]
}

/**
 * Applies the retention policy to complete backups: the newest, and those that kept releases need, are
 * never pruned. With `apply` false nothing is deleted (a dry run). Leftover temp dirs of interrupted runs
 * are removed only when we hold the lock and they are over a day old.
 */
export async function pruneBackups(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  opts: { stage: string; apply: boolean; protect?: string[] }
): Promise<PruneResult> {
  const listing = await listBackups(ctx, s, plan, opts.stage)
  const history = parseHistory((await runOn(ctx, s, readHistory(s.layout), { stage: opts.stage })).stdout)
  const releases = parseKeyValues((await runOn(ctx, s, listReleases(s.layout), { stage: opts.stage })).stdout)
  const kept = releases.get('RELEASE') ?? []
  const marked = listing.backups.filter(b => b.protected).map(b => b.name)
  const protect = [...protectedBackups(history, kept), ...marked, ...(opts.protect ?? [])]
  const complete = listing.backups.filter(b => b.complete)
  const sel = selectRetention(
    complete.map(b => b.name),
    plan.config.retention,
    protect
  )
  const pruneNames = new Set(sel.prune)
  const files = complete.filter(b => pruneNames.has(b.name)).flatMap(b => b.files.map(f => f.file))
  // incomplete sets older than the newest complete backup are leftovers of runs that died mid-publish
  const newest = complete.at(-1)?.created.getTime() ?? 0
  const broken = listing.backups.filter(b => !b.complete && !b.protected && b.created.getTime() < newest)
  files.push(...broken.flatMap(b => b.files.map(f => f.file)))
  // a verify (which takes no lock) may be using its temp dir right now: only day-old leftovers go
  const now = listing.now ?? Date.now() / 1000
  const temps = ctx.lock ? listing.temps.filter(t => now - t.mtime > 86_400).map(t => t.name) : []
  const result: PruneResult = {
    keep: sel.keep,
    prune: [...sel.prune, ...broken.map(b => b.name)],
    reasons: sel.reasons,
    removed: [],
    temps
  }
  if (!opts.apply || (!files.length && !temps.length)) return result
  const r = await runOn(ctx, s, pruneScript(plan, files, temps), { stage: opts.stage })
  result.removed = parseKeyValues(r.stdout).get('REMOVED') ?? []
  if (result.prune.length)
    ctx.log.info(
      `pruned ${result.prune.length} backup(s) by retention: ${result.prune.join(', ')}`,
      s.host.name
    )
  return result
}
