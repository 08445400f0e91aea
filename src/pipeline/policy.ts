import { ExitCode } from '../core/exit.js'
import type { StageEffect } from './stage.js'

/**
 * The failure policy: what happens when a stage fails. The orchestrator (src/pipeline/orchestrator.ts) keeps
 * the undo ledger and asks this module; no other file decides.
 *
 * What is undone: every (stage, host) pair the run started, the failed one included (a host is "touched"
 * when the orchestrator called the stage's run for it, whether that finished, failed or was still running
 * when another host failed; hosts a stage never started are not undone). A stage may say it has nothing
 * to undo on a host (`needsUndo`); then nothing is run or recorded for it.
 *
 * | effect | undone   | within the group | its undo fails                                   |
 * |--------|----------|------------------|--------------------------------------------------|
 * | data   | 1st      | newest first     | exit 5: a person must look                       |
 * | live   | 2nd      | newest first     | exit 5 when it had gone live, else only recorded |
 * | disk   | 3rd      | newest first     | recorded; the exit code does not change          |
 * | none   | 4th      | newest first     | recorded; the exit code does not change          |
 *
 * The database goes back before the code restarts against it; the code goes back before the release dir
 * it ran from is touched. Hosts within a stage are undone newest first too (started in that order, all at
 * once unless the run has a parallelism limit; one host's failed undo does not stop the others).
 *
 * Re-verify: once, after the live group, when something went live and every live undo succeeded: the
 * live stage checks what its undo put back (`recheck`, the previous release's health checks) on the hosts
 * it restored. Its failure is a failed undo of that stage (exit 5).
 *
 * | the run                                                               | exit |
 * |-----------------------------------------------------------------------|------|
 * | every stage passed                                                    | 0    |
 * | an undo that needs a person failed, or a live change has no undo      | 5    |
 * | failed after something went live, and all of it was put back          | 4    |
 * | failed on bad input (a StageError with exit code 2), nothing live     | 2    |
 * | failed, nothing live changed                                          | 3    |
 */
export const EFFECTS: Record<
  StageEffect,
  { order: number; undoFailure: 'person' | 'person-if-live' | 'record' }
> = {
  data: { order: 0, undoFailure: 'person' },
  live: { order: 1, undoFailure: 'person-if-live' },
  disk: { order: 2, undoFailure: 'record' },
  none: { order: 3, undoFailure: 'record' }
}

/** One ledger entry as the policy sees it: a stage that was started, with the hosts it touched. */
export interface Touched<T> {
  effect: StageEffect
  /** Position in the run: larger is newer. */
  index: number
  item: T
}

/** The undo order: by effect (data, live, disk, none), newest first within each. */
export function undoOrder<T>(touched: Touched<T>[]): Touched<T>[] {
  return [...touched].sort((a, b) => EFFECTS[a.effect].order - EFFECTS[b.effect].order || b.index - a.index)
}

/** Whether a failed undo leaves the run needing a person (exit 5). */
export function undoFailureNeedsPerson(effect: StageEffect, wentLive: boolean): boolean {
  const rule = EFFECTS[effect].undoFailure
  return rule === 'person' || (rule === 'person-if-live' && wentLive)
}

/** Whether to re-verify the restored release now: right after the live group, once, when it went live. */
export function reverifyNow(opts: {
  /** The effect of the undo group just finished. */
  group: StageEffect
  /** Something live changed in this run. */
  live: boolean
  /** An undo in the live group failed (the previous release is not back everywhere). */
  liveUndoFailed: boolean
}): boolean {
  return opts.group === 'live' && opts.live && !opts.liveUndoFailed
}

/** The exit code of a run from what failed and what its undo did. */
export function exitCode(opts: {
  failed: boolean
  live: boolean
  needsPerson: boolean
  badInput: boolean
}): number {
  if (!opts.failed) return ExitCode.ok
  if (opts.needsPerson) return ExitCode.rollbackFailed
  if (opts.live) return ExitCode.rolledBack
  if (opts.badInput) return ExitCode.badInput
  return ExitCode.failedNothingChanged
}
