import type { RunContext } from './context.js'

/**
 * A named step of a run. `run` does the work; `undo`, where the stage changes something, puts it back.
 * Stages never call each other: the orchestrator alone decides what to undo and when.
 */
export interface Stage {
  readonly name: string
  run(ctx: RunContext): Promise<void>
  undo?(ctx: RunContext, info: { live: boolean }): Promise<void>
  /** True once the stage changed what users see (current, a restart): undoing it is a rollback. */
  changedLive?(): boolean
  /** Undo this one before the others (the database goes back before the code restarts against it). */
  undoFirst?: boolean
  /**
   * Whether `undo` has anything to do (default: yes). When it says no, the orchestrator neither runs the undo
   * nor records it, so a run never reports "undo migrate undone" for a migration that changed nothing.
   */
  needsUndo?(): boolean
  /** When this undo fails, the run needs a person (exit 5) even if nothing else went live. */
  undoMustSucceed?(): boolean
  /** What the undo needs (JSON-safe), for another process to undo the stage (the Action's post step). */
  save?(): unknown
}

export interface StageRecord {
  name: string
  status: 'ok' | 'failed' | 'skipped' | 'undone' | 'undo-failed'
  duration_s: number
  error?: string
  host?: string
}
