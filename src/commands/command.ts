import { posix, type ShellDialect } from './dialect.js'

/**
 * A command for a host, built as data. `script` is in the host's shell dialect (POSIX sh today, see
 * src/commands/dialect.ts); it reaches the host over stdin and is run by REMOTE_SHELL, so the host's process list shows only that fixed command line. `env` values are exported at
 * the top of the script, also over stdin: secrets never appear in argv.
 */
export interface RemoteCommand {
  /** What it does, for logs and `plan`. */
  label: string
  script: string
  env?: Record<string, string>
  /** Runs user code (build, restart): output is streamed to the log line by line. */
  user?: boolean
  /** Our own progress lines (stderr) are streamed to the log as they come. */
  stream?: boolean
  /** A user command: what the log's `$ ` line shows (default: the script's lines after its first, the `cd`). */
  display?: string
  /** Set by `combine`: the label of each command it joined, in order (`plan` shows them one by one). */
  parts?: string[]
}

/** The last line of every script safe-deploy sends (see ShellDialect.endOfScript; POSIX today). */
export const END_OF_SCRIPT = posix.endOfScript

/** The command line sent over SSH for every script (see ShellDialect.remoteShell; POSIX today). */
export const REMOTE_SHELL = posix.remoteShell

/** The command's script with its `env` exported at the top, in `dialect` (POSIX by default). */
export function withEnv(cmd: RemoteCommand, dialect: ShellDialect = posix): string {
  return dialect.withEnv(cmd.script, cmd.env)
}

/** Script lines joined (POSIX); `false` and `undefined` are left out. */
export function script(...lines: (string | false | undefined)[]): string {
  return posix.script(lines)
}

/** Several commands as one script (one round trip). Only the last may `exit` early. */
export function combine(label: string, parts: RemoteCommand[]): RemoteCommand {
  const env = Object.assign({}, ...parts.map(p => p.env ?? {})) as Record<string, string>
  return {
    label,
    script: parts.map(p => p.script).join('\n'),
    env: Object.keys(env).length ? env : undefined,
    parts: parts.flatMap(p => p.parts ?? [p.label])
  }
}
