import { sh } from './quote.js'

/**
 * A command for a host, built as data. `script` is POSIX sh; it reaches the host over stdin and is run by
 * REMOTE_SHELL, so the host's process list shows only that fixed command line. `env` values are exported at
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
  /** Set by `combine`: the label of each command it joined, in order (`plan` shows them one by one). */
  parts?: string[]
}

/**
 * The last line of every script safe-deploy sends to REMOTE_SHELL. It says: the sender keeps stdin open while
 * the script runs, and stdin reaching its end before the script is done means "stop".
 */
export const END_OF_SCRIPT = '#safe-deploy:end-of-script'

/**
 * The command line sent over SSH for every script: read the script from stdin, then run it.
 *
 * A script that ends with the END_OF_SCRIPT line runs in a subshell (stdin: /dev/null) next to a watcher that
 * waits for the rest of stdin: when stdin ends before the script (the run was interrupted and closed the
 * channel, or the connection dropped), the watcher kills the script's process group (sshd puts each session
 * in its own). So an interrupted build or restart never goes on running on the host behind the back of the
 * undo, also where sshd refuses signal requests (root logins). When the script finishes, the watcher is
 * stopped: what the script started in the background keeps running. A script piped in whole (no END_OF_SCRIPT
 * line) just runs, as `sh -c 'eval "$(cat)"'` would run it.
 */
export const REMOTE_SHELL =
  `sh -c 's=$(sed -n "/^${END_OF_SCRIPT}\\$/{p;q;};p"); ` +
  `case $s in *"${END_OF_SCRIPT}") exec 3<&0; ` +
  '{ cat <&3 >/dev/null 2>&1; kill -KILL 0; } >/dev/null 2>&1 & w=$!; ' +
  `(eval "\${s%"${END_OF_SCRIPT}"}") </dev/null 3<&-; r=$?; kill $w 2>/dev/null; exit $r;; ` +
  `esac; eval "$s"'`

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
    env: Object.keys(env).length ? env : undefined,
    parts: parts.flatMap(p => p.parts ?? [p.label])
  }
}
