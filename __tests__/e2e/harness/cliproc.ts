/**
 * Running the CLI for fault injection, two ways:
 *
 * - cliWatching: in this process (fast), with a callback on every stderr line as the reporter writes it:
 *   the callback runs synchronously, before the run goes on, so a fault injected there lands exactly
 *   between two steps (e.g. on `== verify`: after the switch, before the first health check).
 * - spawnCli: the current source (src/cli.ts through tsx's loader) as a real child process, so that it can
 *   be sent SIGINT/SIGTERM as a cancelled CI job does. `node --import tsx src/cli.ts` is what `npx tsx
 *   src/cli.ts` runs, minus the npx and tsx wrapper processes: the signal reaches the CLI itself, as it
 *   reaches `node dist/cli.js` in production.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { join, resolve } from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { runCli } from '../../../src/platform/cli.js'
import type { RunResult } from '../../../src/pipeline/result.js'
import { waitFor } from './app.js'

export interface CliOutcome {
  code: number
  stdout: string
  stderr: string
}

/** Fails with the run's stderr tail when the exit code is not the expected one. */
export function expectExit(r: CliOutcome, code: number): void {
  if (r.code !== code) {
    throw new Error(
      `expected exit ${code}, got ${r.code}\n--- stderr (tail) ---\n${r.stderr.split('\n').slice(-40).join('\n')}\n--- stdout ---\n${r.stdout.slice(0, 4000)}`
    )
  }
}

/** The --json result of a run. */
export function resultOf(r: CliOutcome): RunResult {
  try {
    return JSON.parse(r.stdout) as RunResult
  } catch {
    throw new Error(`no JSON result on stdout (exit ${r.code}):\n${r.stdout}\n${r.stderr.slice(-3000)}`)
  }
}

/** runCli in this process; `onLine` sees each stderr line synchronously, as the run writes it. */
export async function cliWatching(
  args: string[],
  env: NodeJS.ProcessEnv,
  onLine: (line: string) => void,
  signal?: AbortSignal
): Promise<CliOutcome> {
  let out = ''
  let err = ''
  let partial = ''
  const stdout = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += String(chunk)
      cb()
    }
  })
  const stderr = new Writable({
    write(chunk: Buffer, _enc, cb) {
      err += String(chunk)
      partial += String(chunk)
      let i: number
      while ((i = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, i)
        partial = partial.slice(i + 1)
        onLine(line)
      }
      cb()
    }
  })
  const code = await runCli(args, { stdout, stderr, env, signal })
  return { code, stdout: out, stderr: err }
}

/** The repository root (docs, examples, src). */
export const repo = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..')
const tsxLoader = pathToFileURL(join(repo, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href

export interface CliProcess {
  child: ChildProcess
  stdout(): string
  stderr(): string
  /** Resolves when a stderr line matches. */
  line(pattern: RegExp, timeoutMs?: number): Promise<string>
  /** Resolves with the exit code and output once the process has exited. */
  exited: Promise<CliOutcome & { signal: NodeJS.Signals | null }>
  /**
   * What a cancelled GitHub Actions job does: SIGINT now, SIGTERM 7.5 s later if it still runs (and SIGKILL at
   * 10 s, which we do not send: the test asserts the run ended before). Resolves once the process exited, with
   * whether the SIGTERM was sent and how long the process took to exit after the SIGINT.
   */
  cancel(opts?: { onSigterm?: () => void }): Promise<{ sigterm: boolean; exitAfterMs: number }>
}

/** Starts `safe-deploy <args>` from the current source as a child process in `cwd`. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv, cwd: string): CliProcess {
  return spawnNode(['--import', tsxLoader, join(repo, 'src', 'cli.ts'), ...args], env, cwd, 'stderr')
}

/**
 * Starts the bundled Action as the runner does: `node dist/index.js` (main step) or `node dist/post.js` (post
 * step), inputs as INPUT_* variables in `env`. Its log goes to stdout: `line()` watches stdout.
 */
export function spawnAction(entry: 'index' | 'post', env: NodeJS.ProcessEnv, cwd: string): CliProcess {
  return spawnNode([join(repo, 'dist', `${entry}.js`)], env, cwd, 'stdout')
}

/**
 * The Action's main step (src/index.ts) or post step (src/post.ts) from the current source, through tsx's
 * loader as spawnCli does: for tests of src/ changes that dist/ (spawnAction) does not have yet. Its log goes
 * to stdout: `line()` watches stdout.
 */
export function spawnActionSource(entry: 'index' | 'post', env: NodeJS.ProcessEnv, cwd: string): CliProcess {
  return spawnNode(['--import', tsxLoader, join(repo, 'src', `${entry}.ts`)], env, cwd, 'stdout')
}

/**
 * What the runner makes of a file command file (GITHUB_OUTPUT, GITHUB_STATE): `name<<delimiter` blocks and
 * `name=value` lines, the last value of a name winning.
 */
export function readFileCommands(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line)
    if (heredoc) {
      const [, name, delimiter] = heredoc as unknown as [string, string, string]
      const value: string[] = []
      for (i++; i < lines.length && lines[i] !== delimiter; i++) value.push(lines[i] as string)
      out[name] = value.join('\n')
    } else if (line.includes('=')) {
      out[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1)
    }
  }
  return out
}

function spawnNode(
  argv: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
  watch: 'stdout' | 'stderr'
): CliProcess {
  const child = spawn(process.execPath, argv, {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c))
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (err += c))
  const exited = new Promise<CliOutcome & { signal: NodeJS.Signals | null }>(done =>
    child.on('close', (code, signal) =>
      done({ code: code ?? (signal ? 128 : 255), signal, stdout: out, stderr: err })
    )
  )
  let exitedAt: number | undefined
  void exited.then(() => (exitedAt = Date.now()))
  return {
    child,
    exited,
    stdout: () => out,
    stderr: () => err,
    async line(pattern, timeoutMs = 60_000) {
      const text = () => (watch === 'stderr' ? err : out)
      return waitFor(
        `a ${watch} line matching ${pattern} from the process`,
        () => {
          if (exitedAt !== undefined && !pattern.test(text()))
            throw new Error(`the process exited before printing ${pattern}:\n${text()}\n${err}`)
          return text()
            .split('\n')
            .find(l => pattern.test(l))
        },
        timeoutMs,
        10
      )
    },
    async cancel(opts = {}) {
      const t0 = Date.now()
      child.kill('SIGINT')
      let sigterm = false
      const timer = setTimeout(() => {
        sigterm = true
        child.kill('SIGTERM')
        opts.onSigterm?.()
      }, 7500)
      await exited
      clearTimeout(timer)
      return { sigterm, exitAfterMs: (exitedAt ?? Date.now()) - t0 }
    }
  }
}
