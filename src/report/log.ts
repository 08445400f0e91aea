import { appendFileSync, mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Redactor } from './redact.js'

/**
 * Where progress goes besides the log file: a terminal, GitHub's log groups, GitLab's job log. A run's
 * groups are opened and closed by the `stageGroups` subscriber of its events (src/engine/groups.ts).
 */
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
 * Escapes what could forge or hide a log line: CR, ESC and the other C0 controls but tab, DEL and the C1
 * controls become visible escapes (`\\r`, `\\x1b`); with `newlines`, so does a line break (for the stage and
 * host prefix, which must never start a new line).
 */
export function escapeControls(text: string, newlines = false): string {
  // eslint-disable-next-line no-control-regex
  const re = newlines ? /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g : /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g
  return text.replace(re, c => {
    if (c === '\r') return '\\r'
    if (c === '\n') return '\\n'
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`
  })
}

/** Where a message that cannot go anywhere else goes: the process's stderr, never throwing. */
function toStderr(line: string): void {
  try {
    process.stderr.write(`${line}\n`)
  } catch {
    /* nowhere left to say it */
  }
}

/**
 * The deploy log: `[2026-11-21 19:30:05] [stage] [host] message` lines, redacted, written to a file and
 * passed to the reporter. Every line that leaves this class has been through the redactor and has its control
 * characters escaped. Writing never throws: when the log file cannot be written (a full disk), one stderr line
 * says so and the lines are kept in memory (`lines`, which also go to the host's deploy.log).
 */
export class DeployLog {
  private stage = 'run'
  readonly lines: string[] = []
  /** Why the log file could not be written (undefined while it can). */
  fileError: string | undefined

  constructor(
    readonly file: string | undefined,
    private readonly reporter: Reporter,
    readonly redactor: Redactor
  ) {
    if (file) {
      try {
        mkdirSync(dirname(file), { recursive: true })
      } catch (e) {
        this.fileFailed(e)
      }
    }
  }

  private fileFailed(e: unknown): void {
    if (this.fileError) return
    this.fileError = typeof (e as Error)?.message === 'string' ? (e as Error).message : String(e)
    // once, on stderr (the terminal, the CI log): the file is not written again in this run
    this.write(
      `cannot write the log file ${this.file} (${this.fileError}); the log is kept in memory and still goes to the host's deploy.log`,
      { level: 'warn' }
    )
  }

  private toFile(line: string): void {
    if (!this.file || this.fileError) return
    try {
      appendFileSync(this.file, line + '\n', { mode: 0o600 })
    } catch (e) {
      this.fileFailed(e)
    }
  }

  private toReporter(level: Level, shown: string): void {
    try {
      if (level === 'error') this.reporter.error(shown)
      else if (level === 'warn') this.reporter.warn(shown)
      else this.reporter.info(shown)
    } catch {
      toStderr(shown)
    }
  }

  setStage(stage: string): void {
    this.stage = stage
  }

  write(message: string, opts: { host?: string; level?: Level; stage?: string } = {}): void {
    const level = opts.level ?? 'info'
    const text = this.redactor.redact(message).replace(/\s+$/, '')
    const stage = escapeControls(this.redactor.redact(opts.stage ?? this.stage), true)
    const host = opts.host ? escapeControls(this.redactor.redact(opts.host), true) : undefined
    // the prefix starts every line with `[`: no line of remote output can become a `::` workflow command
    const prefix = `[${stage}]${host ? ` [${host}]` : ''}`
    for (const raw of text.split('\n')) {
      const part = escapeControls(raw.replace(/\r$/, ''))
      const line = `[${stamp()}] ${prefix} ${part}`
      this.lines.push(line)
      this.toFile(line)
      this.toReporter(level, `${prefix} ${part}`)
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

  /** A run's groups are opened by its events (src/engine/groups.ts); this is for a caller outside a run. */
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
