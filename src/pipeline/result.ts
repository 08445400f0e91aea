import type { StageRecord } from './stage.js'

/** What a run ends with: the outputs every platform publishes (README "Outputs"). */
export interface RunResult {
  command: 'deploy' | 'rollback'
  status: 'success' | 'rolled-back' | 'failed'
  exitCode: number
  release?: string
  previousRelease?: string
  rolledBack: boolean
  backupName?: string
  backupPath?: string
  error?: { stage: string; host?: string; message: string }
  /** When a rollback failed (exit 5): what each host looks like now, as far as the run could tell. */
  hostStates?: HostState[]
  stages: StageRecord[]
  hosts: string[]
  logFile?: string
  reportFile?: string
  started: string
  finished: string
  durationS: number
  verdict: string
}

/** One host after a failed rollback: what a person needs to decide what to do. */
export interface HostState {
  host: string
  /** The release `current` points to now; unset when there is none or the host could not be reached. */
  current?: string
  /** Whether the run could reach the host to look. */
  reachable: boolean
  /** The configured checks, one attempt, against `current`; unset when not checked. */
  healthy?: boolean
  /**
   * One sentence: where `current` points, what that release is to this run, and whether it passes its checks;
   * for a host out of reach, what it served before the run and what the run last did to it.
   */
  note: string
}
