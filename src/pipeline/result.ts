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
  /** When a rollback failed: what each host looks like now. */
  hostStates?: { host: string; current?: string; note?: string }[]
  stages: StageRecord[]
  hosts: string[]
  logFile?: string
  reportFile?: string
  started: string
  finished: string
  durationS: number
  verdict: string
}
