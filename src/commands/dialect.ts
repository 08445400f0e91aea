/**
 * The shell a host runs our scripts in. Every builder in src/commands/ writes scripts for a dialect; the one
 * dialect today is POSIX sh (`posix`). A host with another shell (PowerShell on Windows) would be a new
 * ShellDialect here and builders that take it, not a rewrite of the transport or the stages.
 */
import { sh } from './quote.js'

export interface ShellDialect {
  readonly name: string
  /** Quotes one value so that the shell reads it as one literal word (POSIX: `sh()`, the one quoting function). */
  quote(value: string | number): string
  /** Joins script lines; `false` and `undefined` lines are left out (for conditional lines). */
  script(lines: readonly (string | false | undefined)[]): string
  /** The script with `env` set for all of it, at its top (the values travel with the script, not in argv). */
  withEnv(script: string, env: Readonly<Record<string, string>> | undefined): string
  /**
   * The last line of every script: the sender keeps stdin open while the script runs, and stdin reaching its
   * end before the script is done means "stop".
   */
  readonly endOfScript: string
  /** The fixed command line sent to the host for every script: reads the script from stdin and runs it. */
  readonly remoteShell: string
  /** What is written to `remoteShell`'s stdin for `script`; refused when a line of it is `endOfScript`. */
  frame(script: string): string
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

const POSIX_END_OF_SCRIPT = '#safe-deploy:end-of-script'

/**
 * The command line sent over SSH for every script: read the script from stdin, then run it.
 *
 * A script that ends with the end-of-script line runs in a subshell (stdin: /dev/null) next to a watcher that
 * waits for the rest of stdin: when stdin ends before the script (the run was interrupted and closed the
 * channel, or the connection dropped), the watcher kills the script's process group (sshd puts each session
 * in its own). So an interrupted build or restart never goes on running on the host behind the back of the
 * undo, also where sshd refuses signal requests (root logins). When the script finishes, the watcher is
 * stopped: what the script started in the background keeps running. A script piped in whole (no end-of-script
 * line) just runs, as `sh -c 'eval "$(cat)"'` would run it.
 */
const POSIX_REMOTE_SHELL =
  `sh -c 's=$(sed -n "/^${POSIX_END_OF_SCRIPT}\\$/{p;q;};p"); ` +
  `case $s in *"${POSIX_END_OF_SCRIPT}") exec 3<&0; ` +
  '{ cat <&3 >/dev/null 2>&1; kill -KILL 0; } >/dev/null 2>&1 & w=$!; ' +
  `(eval "\${s%"${POSIX_END_OF_SCRIPT}"}") </dev/null 3<&-; r=$?; kill $w 2>/dev/null; exit $r;; ` +
  `esac; eval "$s"'`

/** POSIX sh (dash, bash, busybox ash): what every host runs today. */
export const posix: ShellDialect = {
  name: 'posix',
  quote: sh,
  script: lines => lines.filter((l): l is string => typeof l === 'string').join('\n'),
  withEnv(script, env) {
    const entries = Object.entries(env ?? {})
    for (const [k] of entries) {
      if (!ENV_NAME.test(k)) throw new Error(`not an environment variable name: ${JSON.stringify(k)}`)
    }
    const exports = entries.map(([k, v]) => `export ${k}=${sh(v)}`)
    return exports.length ? `${exports.join('\n')}\n${script}` : script
  },
  endOfScript: POSIX_END_OF_SCRIPT,
  remoteShell: POSIX_REMOTE_SHELL,
  frame(script) {
    if (script.split('\n').includes(POSIX_END_OF_SCRIPT))
      throw new Error(`a line of the script is ${POSIX_END_OF_SCRIPT}`)
    return `${script}\n${POSIX_END_OF_SCRIPT}\n`
  }
}
