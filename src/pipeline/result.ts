import type { StageRecord } from './stage.js'

/** The commands that change a host: each runs through the one lifecycle (src/engine/lifecycle.ts). */
export type RunCommand = 'deploy' | 'rollback' | 'backup' | 'restore' | 'prune'

/** What a run ends with: the outputs every platform publishes (README "Outputs"), and the JSON report. */
export interface RunResult {
  command: RunCommand
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
  /** Per host: what the run did there (the log's host table, --json, the job summary, the GitLab dotenv). */
  hostResults?: HostResult[]
  logFile?: string
  reportFile?: string
  started: string
  finished: string
  durationS: number
  verdict: string
  /** deploy: the database revision before and after the migrate stage (with a `revision` command). */
  revision?: { before?: string; after?: string }
  /** backup: the files of the backup taken (backupName), with their sizes. */
  files?: { file: string; bytes: number }[]
  /** backup --keep: retention never deletes it. */
  protected?: boolean
  /** restore: the artifacts put back, the safety backup taken first, tables the backup does not have. */
  restored?: string[]
  safetyBackup?: string
  leftTables?: Record<string, string[]>
  /** prune: what retention kept (and why) and deleted. */
  keep?: string[]
  prune?: string[]
  reasons?: Record<string, string[]>
  removed?: string[]
  temps?: string[]
}

/** One host of a run, for the per-host report. */
export interface HostResult {
  name: string
  address?: string
  roles: string[]
  /** The release `current` pointed to when the run started, and when it ended (as far as the run knows). */
  before?: string
  after?: string
  /** The last stage the run started on this host. */
  stage?: string
  durationS: number
  /**
   * ok: the run did what it set out to do here; failed: nothing live changed here but a stage failed;
   * rolled-back: switched and put back; rollback-failed: a person must look; not-switched: staged, never
   * switched (its staged release removed); skipped: left out by --skip-unreachable; unreachable: could not connect.
   */
  result: 'ok' | 'failed' | 'rolled-back' | 'rollback-failed' | 'not-switched' | 'skipped' | 'unreachable'
  /** This host's own first error. */
  error?: string
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
