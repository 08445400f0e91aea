import type { Readable } from 'node:stream'

/** What a command printed and how it ended. */
export interface ExecResult {
  code: number
  stdout: string
  stderr: string
}

export interface ExecOptions {
  /** Bytes for the command's standard input; a string is sent whole, then EOF. */
  stdin?: string | Readable
  /**
   * Send a string stdin without the EOF and keep stdin open until the command ends; EOF is sent only to stop
   * it (interrupt, timeout). REMOTE_SHELL scripts ending in END_OF_SCRIPT stop when stdin ends early.
   */
  holdStdin?: boolean
  /** Kill the command after this many milliseconds (0: no limit). */
  timeoutMs?: number
  /** Called with each chunk of output as it arrives, for live logs. */
  onStdout?: (chunk: string) => void
  onStderr?: (chunk: string) => void
  /** Raw stdout bytes go here, with backpressure (binary-safe: downloads); `stdout` is then ''. */
  stdoutSink?: NodeJS.WritableStream
  /** Aborts the command (the CLI was interrupted). */
  signal?: AbortSignal
  /** What the command does (its RemoteCommand label), for a transport that records (src/transport/recording.ts). */
  label?: string
  /** For a script combined from several commands: each one's label, in order (shown by `plan`). */
  parts?: string[]
}

/**
 * A connection to one host. `exec` runs `command` with `sh -c` semantics on the host (over SSH the
 * login shell parses it) and never throws for a non-zero exit: callers look at `code`.
 */
export interface Transport {
  /** A short name for logs: `web-1` or `127.0.0.2:2222`. */
  readonly label: string
  exec(command: string, options?: ExecOptions): Promise<ExecResult>
  close(): Promise<void>
}
