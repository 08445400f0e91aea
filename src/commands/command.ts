import { sh } from './quote.js'

/**
 * A command for a host, built as data. `script` is POSIX sh; it reaches the host over stdin and is run by
 * REMOTE_SHELL, so the host's process list shows only `sh -c eval "$(cat)"`. `env` values are exported at
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
}

/** The command line sent over SSH for every script: read the script from stdin, then run it. */
export const REMOTE_SHELL = `sh -c 'eval "$(cat)"'`

export function withEnv(cmd: RemoteCommand): string {
  for (const k of Object.keys(cmd.env ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
      throw new Error(`not an environment variable name: ${JSON.stringify(k)}`)
  }
  const exports = Object.entries(cmd.env ?? {}).map(([k, v]) => `export ${k}=${sh(v)}`)
  return exports.length ? `${exports.join('\n')}\n${cmd.script}` : cmd.script
}

export function script(...lines: (string | false | undefined)[]): string {
  return lines.filter((l): l is string => typeof l === 'string').join('\n')
}

/** Several commands as one script (one round trip). Only the last may `exit` early. */
export function combine(label: string, parts: RemoteCommand[]): RemoteCommand {
  const env = Object.assign({}, ...parts.map(p => p.env ?? {})) as Record<string, string>
  return {
    label,
    script: parts.map(p => p.script).join('\n'),
    env: Object.keys(env).length ? env : undefined
  }
}
