import type { StageEvent } from '../pipeline/stage.js'
import type { HostState, RunCommand, RunResult } from '../pipeline/result.js'

/**
 * What a run tells its subscribers, in order: `run-started`, then per stage `stage-started` and
 * `stage-finished` (also for each undo, `phase: 'undo'`), `release-chosen` once before the first stage that
 * starts with the release known, `host-state` for each host a failed rollback left
 * (exit 5), and last `run-finished` with the result. Every text in an event has been through the redactor.
 */
export type RunEvent =
  | {
      type: 'run-started'
      command: RunCommand
      app: string
      hosts: string[]
      actor: string
      started: string
      logFile?: string
    }
  /**
   * The release the run deploys or switches to is known (a deploy's after preflight, a rollback's after
   * choose): before the next stage starts. Runs that never get that far (and backup runs) have none.
   */
  | { type: 'release-chosen'; release: string; previous?: string }
  /** Once per stage (a host stage's hosts are inside it) and once per undo; see StageEvent. */
  | StageEvent
  | { type: 'host-state'; state: HostState }
  | { type: 'run-finished'; result: RunResult }

export type RunEventType = RunEvent['type']

/**
 * Something that reacts to a run: the JSON report (src/engine/lifecycle.ts), the log's groups
 * (src/engine/groups.ts), the Action's outputs and job summary
 * (src/platform/github.ts), the CLI's result (src/platform/cli.ts). Adding one is one file: a subscriber and a
 * line where the run request is made. A subscriber that throws (or rejects) is logged once per event as a
 * warning and never changes the run's outcome or exit code.
 */
export interface RunSubscriber {
  /** For the warning when it fails: `the job summary`, `the report file`. */
  readonly name: string
  on(event: RunEvent): void | Promise<void>
}

/** Delivers events to subscribers one at a time, in the order they were added; never throws. */
export class RunEvents {
  private readonly subscribers: RunSubscriber[]

  constructor(
    subscribers: readonly RunSubscriber[],
    private readonly warn: (message: string) => void
  ) {
    this.subscribers = [...subscribers]
  }

  async emit(event: RunEvent): Promise<void> {
    for (const s of this.subscribers) {
      try {
        await s.on(event)
      } catch (e) {
        try {
          this.warn(
            `${s.name} failed on ${event.type} (${(e as Error)?.message ?? String(e)}); the run goes on`
          )
        } catch {
          /* a warning that cannot be given must not fail the run either */
        }
      }
    }
  }
}

/** A subscriber from a function that cares about one event type. */
export function onEvent<T extends RunEventType>(
  name: string,
  type: T,
  fn: (event: Extract<RunEvent, { type: T }>) => void | Promise<void>
): RunSubscriber {
  return {
    name,
    on: e => (e.type === type ? fn(e as Extract<RunEvent, { type: T }>) : undefined)
  }
}
