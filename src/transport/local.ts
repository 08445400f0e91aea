import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import type { ExecOptions, ExecResult, Transport } from './types.js'
import { feedStdin } from './stdin.js'
import { NO_SH_ON_WINDOWS, shellFor, type ShellChoice, type ShellKind } from './shell.js'

/** Ends `child` and everything it started (shell.ts: a process group on POSIX, taskkill on Windows). */
function killTree(child: ChildProcess, how: ShellChoice['kill']): void {
  if (!child.pid) return
  if (how === 'group') process.kill(-child.pid, 'SIGKILL')
  else
    spawn('taskkill', ['/pid', String(child.pid), '/T', '/F'], { stdio: 'ignore', windowsHide: true }).on(
      'error',
      () => child.kill('SIGKILL')
    )
}

/**
 * Runs commands on this machine: self-hosted runners, the demo, and the runner's own steps. By default a
 * command is a POSIX sh script (/bin/sh; Git for Windows' sh on Windows); `shell: 'platform'` runs the user's
 * commands with the platform's shell (cmd.exe on Windows), in `cwd` when given. See shell.ts.
 */
export class LocalTransport implements Transport {
  constructor(
    readonly label: string = 'local',
    private readonly opts: { shell?: ShellKind; cwd?: string } = {}
  ) {}

  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    // an interrupted run starts nothing new (the undo passes a fresh signal)
    if (options.signal?.aborted) return Promise.reject(new Error('interrupted'))
    const shell = shellFor(this.opts.shell ?? 'posix', command, process.platform, process.env, existsSync)
    if (!shell) return Promise.reject(new Error(NO_SH_ON_WINDOWS))
    return new Promise((resolve, reject) => {
      const child = spawn(shell.file, shell.args, {
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: shell.kill === 'group',
        cwd: this.opts.cwd,
        env: Object.keys(shell.env).length ? { ...process.env, ...shell.env } : undefined,
        windowsVerbatimArguments: shell.verbatim,
        windowsHide: true
      })
      let stdout = ''
      let stderr = ''
      let finished = false
      const kill = (why: string) => {
        if (finished) return
        finished = true
        try {
          killTree(child, shell.kill)
        } catch {
          /* already gone */
        }
        reject(new Error(why))
      }
      const timer = options.timeoutMs
        ? setTimeout(() => kill(`timed out after ${options.timeoutMs} ms`), options.timeoutMs)
        : undefined
      const onAbort = () => kill('interrupted')
      options.signal?.addEventListener('abort', onAbort, { once: true })
      const sink = options.stdoutSink
      if (sink) {
        child.stdout.on('data', (c: Buffer) => {
          if (!sink.write(c)) {
            child.stdout.pause()
            sink.once('drain', () => child.stdout.resume())
          }
        })
      } else {
        child.stdout.setEncoding('utf8').on('data', (c: string) => {
          stdout += c
          options.onStdout?.(c)
        })
      }
      child.stderr.setEncoding('utf8').on('data', (c: string) => {
        stderr += c
        options.onStderr?.(c)
      })
      child.on('error', e => kill(`cannot start ${shell.file}: ${e.message}`))
      child.on('close', code => {
        if (options.holdStdin) child.stdin.end()
        if (timer) clearTimeout(timer)
        options.signal?.removeEventListener('abort', onAbort)
        if (finished) return
        finished = true
        resolve({ code: code ?? 255, stdout, stderr })
      })
      feedStdin(child.stdin, options.stdin, options.holdStdin)
    })
  }

  async close(): Promise<void> {}
}
