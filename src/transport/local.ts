import { spawn } from 'node:child_process'
import type { ExecOptions, ExecResult, Transport } from './types.js'
import { feedStdin } from './stdin.js'

/** Runs commands on this machine with /bin/sh: self-hosted runners and the demo. */
export class LocalTransport implements Transport {
  constructor(readonly label: string = 'local') {}

  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    // an interrupted run starts nothing new (the undo passes a fresh signal)
    if (options.signal?.aborted) return Promise.reject(new Error('interrupted'))
    return new Promise((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', command], { stdio: ['pipe', 'pipe', 'pipe'], detached: true })
      let stdout = ''
      let stderr = ''
      let finished = false
      const kill = (why: string) => {
        if (finished) return
        finished = true
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL')
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
      child.on('error', e => kill(`cannot start /bin/sh: ${e.message}`))
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
