import type { HostSession, RunContext } from '../host/context.js'

/** Where a stage runs: on the runner, on the primary host only, or on every host (run and undone per host). */
export type StageScope = 'runner' | 'primary' | 'each-host'

/**
 * What a stage changes, which decides how its undo is treated (src/pipeline/policy.ts): `none` nothing,
 * `disk` files users do not see yet (a new release dir), `data` the database or stored data, `live` what
 * users see (current, a restart, the proxy).
 */
export type StageEffect = 'none' | 'disk' | 'data' | 'live'

/** Told to every undo: whether something live changed in this run (the deploy stage then keeps its release). */
export interface UndoInfo {
  live: boolean
  /** Whether something live changed on this host in this run (a fleet: only the hosts a batch switched). */
  liveOn?: (s: HostSession) => boolean
}

interface StageBase {
  readonly name: string
  /** What it changes (default `none`): every stage of the product says it. */
  readonly effect?: StageEffect
  /** What the undo needs (JSON-safe), for another process to undo the stage (the Action's post step). */
  save?(): unknown
}

/**
 * A stage that runs once (on the runner, or on the primary through `primaryOf`). The orchestrator records it
 * in its undo ledger when it starts.
 */
export interface RunStage extends StageBase {
  /** Default `runner`. */
  readonly scope?: Exclude<StageScope, 'each-host'>
  run(ctx: RunContext): Promise<void>
  undo?(ctx: RunContext, info: UndoInfo): Promise<void>
  /**
   * Whether `undo` has anything to do (default: yes). When it says no, the orchestrator neither runs the undo
   * nor records it, so a run never reports "undo migrate undone" for a migration that changed nothing.
   */
  needsUndo?(): boolean
  /** For `effect: 'live'`: whether it got as far as changing what users see (default: yes once started). */
  changedLive?(): boolean
}

/**
 * A stage that runs on every host: the orchestrator calls `run(ctx, host)` per host (bounded parallelism,
 * batches one after another) and records (stage, host) in its undo ledger when it starts the host; on a
 * failure `undo(ctx, host)` runs for exactly those hosts.
 */
export interface HostStage extends StageBase {
  readonly scope: Extract<StageScope, 'each-host'>
  /** Once, on the runner, before the first host (connect, pack the source). A failure fails the stage. */
  begin?(ctx: RunContext): Promise<void>
  run(ctx: RunContext, s: HostSession): Promise<void>
  /** Once after the hosts, also when one failed (`ok` false): clean up what `begin` made. */
  end?(ctx: RunContext, ok: boolean): Promise<void>
  undo?(ctx: RunContext, s: HostSession, info: UndoInfo): Promise<void>
  /** Whether `undo` has anything to do on `s` (default: yes for every host the stage was started on). */
  needsUndo?(s: HostSession): boolean
  /** For `effect: 'live'`: whether it got as far as changing what users see on `s` (default: yes). */
  changedLive?(s: HostSession): boolean
  /**
   * For `effect: 'live'`: checks what the undo put back on `hosts` (the previous release, once). The policy
   * decides when it runs; a failure is a failed undo of this stage.
   */
  recheck?(ctx: RunContext, hosts: HostSession[]): Promise<void>
}

/**
 * A named step of a run. Stages never call each other: the orchestrator runs them and keeps the undo ledger,
 * and src/pipeline/policy.ts alone decides what is undone, in which order, and the exit code.
 */
export type Stage = RunStage | HostStage

/** The stages of safe-deploy's runs, by name: what records, events, history and the log call them. */
export const STAGE_NAMES = [
  'preflight',
  'test',
  'build-local',
  'backup',
  'deploy',
  'migrate',
  'switch',
  'verify',
  'cleanup',
  'choose',
  'database',
  'check',
  'safety-backup',
  'restore',
  'prune'
] as const
export type StageName = (typeof STAGE_NAMES)[number]

/**
 * A stage of safe-deploy's own runs: its name is a StageName, so a misspelt or new name is a compile error
 * until it is added above. (The orchestrator runs a stage of any name; its unit tests use their own.)
 */
export type ProductStage<S extends Stage = Stage> = S & { readonly name: StageName }

/**
 * What the orchestrator tells as it goes (the lifecycle makes run events of them, src/engine/events.ts): a
 * stage starting and finishing, once per stage (a host stage's hosts are inside it), and each undo in the
 * rollback section. An undo finishes when its record is final (after the re-verify that may fail it); the
 * last undo of the run says so (`lastUndo`), which closes the rollback section.
 */
export type StageEvent =
  | {
      type: 'stage-started'
      stage: string
      phase: 'run' | 'undo'
      /** A rollout's batch (1-based) and its hosts: the stage runs once per batch. */
      batch?: number
      hosts?: string[]
    }
  | {
      type: 'stage-finished'
      stage: string
      phase: 'run' | 'undo'
      status: StageRecord['status']
      durationS: number
      error?: string
      /** The host the error names (a host stage failing on one host). */
      host?: string
      /** The last undo of the run: the rollback section ends with it. */
      lastUndo?: true
    }

export interface StageRecord {
  name: string
  status: 'ok' | 'failed' | 'skipped' | 'undone' | 'undo-failed'
  duration_s: number
  error?: string
  host?: string
  /** A rollout's batch (1-based) this record is of: switch and verify have one record per batch. */
  batch?: number
}
