import { appendFileSync, mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Redactor } from './redact.js'

/** Where progress goes besides the log file: a terminal, GitHub's log groups, GitLab's sections. */
export interface Reporter {
  info(line: string): void
  warn(line: string): void
  error(line: string): void
  startGroup(title: string): void
  endGroup(): void
}

export type Level = 'info' | 'warn' | 'error'

const pad = (n: number) => String(n).padStart(2, '0')
export function stamp(d = new Date()): string {
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
}

/** `deploy_20261121_193005`: the log and report file name stem for a run. */
export function runStem(command: string, d: Date): string {
  return `${command}_${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}_${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`
}

/**
 * The deploy log: `[2026-11-21 19:30:05] [stage] [host] message` lines, redacted, written to a file and
 * passed to the reporter. Every line that leaves this class has been through the redactor.
 */
export class DeployLog {
  private stage = 'run'
  readonly lines: string[] = []

  constructor(
    readonly file: string | undefined,
    private readonly reporter: Reporter,
    readonly redactor: Redactor
  ) {
    if (file) mkdirSync(dirname(file), { recursive: true })
  }

  setStage(stage: string): void {
    this.stage = stage
  }

  write(message: string, opts: { host?: string; level?: Level; stage?: string } = {}): void {
    const level = opts.level ?? 'info'
    const text = this.redactor.redact(message).replace(/\s+$/, '')
    for (const part of text.split('\n')) {
      const prefix = `[${opts.stage ?? this.stage}]${opts.host ? ` [${opts.host}]` : ''}`
      const line = `[${stamp()}] ${prefix} ${part}`
      this.lines.push(line)
      if (this.file) appendFileSync(this.file, line + '\n', { mode: 0o600 })
      const shown = `${prefix} ${part}`
      if (level === 'error') this.reporter.error(shown)
      else if (level === 'warn') this.reporter.warn(shown)
      else this.reporter.info(shown)
    }
  }

  info(message: string, host?: string): void {
    this.write(message, { host })
  }
  warn(message: string, host?: string): void {
    this.write(message, { host, level: 'warn' })
  }
  error(message: string, host?: string): void {
    this.write(message, { host, level: 'error' })
  }

  startGroup(title: string): void {
    this.reporter.startGroup(title)
  }
  endGroup(): void {
    this.reporter.endGroup()
  }

  /** A stream of command output, written line by line as it arrives. */
  lineWriter(host: string, level: Level = 'info'): { push: (chunk: string) => void; flush: () => void } {
    let buf = ''
    return {
      push: chunk => {
        buf += chunk
        let i: number
        while ((i = buf.indexOf('\n')) >= 0) {
          this.write(buf.slice(0, i), { host, level })
          buf = buf.slice(i + 1)
        }
      },
      flush: () => {
        if (buf) this.write(buf, { host, level })
        buf = ''
      }
    }
  }
}
