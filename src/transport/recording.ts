import type { ExecOptions, ExecResult, Transport } from './types.js'
import { END_OF_SCRIPT } from '../commands/command.js'

/** One command a dry run sent to a host (or a step it would take on the runner). */
export interface Recorded {
  /** The host's name, or `runner`. */
  host: string
  /** Done on the runner for this host (an HTTP check `from: runner`): shown as `$ command`. */
  onRunner?: boolean
  /** The stage that was running. */
  stage: string
  label: string
  /** The labels of a combined script's parts (one round trip), in order. */
  parts?: string[]
  /** The script as the host would receive it (env exports first); the command line for a raw command. */
  script?: string
  /** What would go to the command's stdin besides the script (the release archive of an upload). */
  stdin?: string
}

/** The scripted answer to one command; undefined: exit 0, no output. */
export type Answer = Partial<ExecResult> | undefined

/** What a host looks like to a dry run: the answers to the commands that read its state. */
export interface AssumedHost {
  /** The release `current` points to (undefined: none). */
  current?: string
  /** Releases on disk, besides `current`. */
  releases?: string[]
  /** blue-green: the port of the pair that serves now (with `current` on it). */
  activePort?: number
}

/**
 * A Transport that runs nothing: it records every command (label and script text) into a shared list and
 * answers with scripted, plausible output, so that `plan` runs the real stages (src/flows/plan.ts) and can
 * show exactly what a deploy would send, in order. The answers describe `assumed` (e.g. an empty host, or one
 * with a current release); every command nobody scripted exits 0 with no output.
 */
export class RecordingTransport implements Transport {
  private revisions = 0

  constructor(
    readonly label: string,
    private readonly sink: Recorded[],
    private readonly stage: () => string,
    private readonly assumed: AssumedHost = {}
  ) {}

  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    if (options.signal?.aborted) throw new Error('interrupted')
    const label = options.label ?? command
    const text = typeof options.stdin === 'string' ? options.stdin : undefined
    const scripted = text !== undefined && text.endsWith(`\n${END_OF_SCRIPT}\n`)
    this.sink.push({
      host: this.label,
      stage: this.stage(),
      label,
      parts: options.parts,
      script: scripted ? text.slice(0, -`\n${END_OF_SCRIPT}\n`.length) : command,
      stdin: scripted ? undefined : options.stdin === undefined ? undefined : (text ?? '(a stream)')
    })
    if (options.stdoutSink) {
      options.stdoutSink.end?.()
    }
    const a = this.answer(options.parts ?? [label])
    return { code: a?.code ?? 0, stdout: a?.stdout ?? '', stderr: a?.stderr ?? '' }
  }

  /** The answer of a script made of `steps` (one label each): the answers of its parts, joined. */
  private answer(steps: string[]): Answer {
    const out = steps.map(l => this.answerOne(l)?.stdout ?? '').join('')
    return { code: 0, stdout: out }
  }

  private answerOne(label: string): Answer {
    const a = this.assumed
    if (label === 'take the deploy lock') return { stdout: 'STATE=acquired\n' }
    if (label === 'renew the deploy lock') return { stdout: 'STATE=renewed\n' }
    if (label === 'release the deploy lock') return { stdout: 'STATE=released\n' }
    if (label === 'inspect host' || label === 'list releases') {
      const all = [...new Set([...(a.releases ?? []), ...(a.current ? [a.current] : [])])]
      return {
        stdout: [
          ...(a.current ? [`CURRENT=releases/${a.current}`] : []),
          ...all.flatMap(r => [`RELEASE=${r}`, `COMPLETE=${r}`]),
          'FREE_KB=10485760',
          ''
        ].join('\n')
      }
    }
    if (label === 'read blue-green state')
      return { stdout: a.activePort && a.current ? `STATE=${a.activePort} ${a.current}\n` : '' }
    if (label === 'migration revision')
      return { stdout: this.revisions++ === 0 ? '<revision-before>\n' : '<revision-after>\n' }
    // backups: every database tool found (the engine reads the lines for its targets), the backup published
    if (label === 'check backup tools and databases')
      return {
        stdout: Array.from({ length: 10 }, (_, i) => `DB_DUMP=${i} mysqldump\nDB_CLIENT=${i} mysql\n`).join(
          ''
        )
      }
    if (label.startsWith('back up to ')) return { stdout: 'DONE=1\n' }
    // an HTTP probe (one attempt, or the on-host retry loop): the expected answer
    if (label.startsWith('GET ')) return { stdout: '\nHTTP_STATUS=200\nATTEMPTS=1\nPASSED=1\n' }
    // verify.heartbeat: a fresh beat
    if (label.startsWith('heartbeat ')) return { stdout: 'HEARTBEAT=fresh\nAGE=1\n' }
    return undefined
  }

  async close(): Promise<void> {}
}
