/**
 * Pause points: a shell snippet to put into a hook (build, restart, a verify command, later a migration) that,
 * once the test arms it, says it was reached and waits until the test releases it. The test then injects its
 * fault (cut the network, signal the CLI, fill the disk, kill the app) while the stage is known to be running.
 *
 * The hosts of the harness are this machine, so the marker files are plain local files.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { waitFor } from './app.js'

export interface PausePoint {
  /** POSIX sh: a no-op unless armed; when armed (once), marks itself reached and waits for release(). */
  readonly shell: string
  /** The next run of the snippet pauses. */
  arm(): void
  /** Resolves when the armed snippet is waiting. */
  reached(timeoutMs?: number): Promise<void>
  /** Lets a waiting snippet go on (it also gives up by itself after maxSeconds). */
  release(): void
  /** Whether the snippet got past its wait (released or timed out) and went on. */
  passed(): boolean
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

export function pausePoint(dir: string, name: string, maxSeconds = 30): PausePoint {
  mkdirSync(dir, { recursive: true })
  const file = (suffix: string) => join(dir, `${name}.${suffix}`)
  const [armed, reached, go, passed] = ['armed', 'reached', 'go', 'passed'].map(file) as [
    string,
    string,
    string,
    string
  ]
  const shell = [
    `if [ -e ${q(armed)} ]; then`,
    `rm -f ${q(armed)}; : > ${q(reached)}; _i=0;`,
    `while [ ! -e ${q(go)} ] && [ "$_i" -lt ${maxSeconds * 10} ]; do sleep 0.1; _i=$((_i + 1)); done;`,
    `: > ${q(passed)};`,
    'fi'
  ].join(' ')
  return {
    shell,
    arm() {
      for (const f of [reached, go, passed]) rmSync(f, { force: true })
      writeFileSync(armed, '')
    },
    async reached(timeoutMs = 30_000) {
      await waitFor(`pause point ${name} to be reached`, () => existsSync(reached), timeoutMs, 20)
    },
    release() {
      writeFileSync(go, '')
    },
    passed: () => existsSync(passed)
  }
}
