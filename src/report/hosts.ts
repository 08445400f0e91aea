/**
 * The per-host report as a table: the log's last lines for a run with more than one host, and the CLI's
 * terminal output. One row per host: name, roles, release before → after, the stage reached, duration,
 * result, and the start of this host's own first error.
 */
import { oneLine } from '../core/excerpt.js'

/** What the table shows of a host: the fields of `HostResult` (src/pipeline/result.ts) it uses. */
export interface HostRow {
  name: string
  roles: string[]
  before?: string
  after?: string
  stage?: string
  durationS: number
  result: string
  error?: string
}

/** An error's excerpt in a cell: its explaining line, cut at this many characters. */
const ERROR_WIDTH = 100

const excerpt = (error: string) => {
  const line = oneLine(error)
  return line.length > ERROR_WIDTH ? `${line.slice(0, ERROR_WIDTH - 1)}…` : line
}

/** The table's lines: a header, then one line per host, columns padded to their widest cell. */
export function hostTable(rows: readonly HostRow[]): string[] {
  const cells = rows.map(r => [
    r.name,
    r.roles.join(',') || '-',
    `${r.before ?? '(none)'} → ${r.after ?? '(none)'}`,
    r.stage ?? '-',
    `${r.durationS.toFixed(1)} s`,
    r.result,
    r.error ? excerpt(r.error) : ''
  ])
  const header = ['host', 'roles', 'release before → after', 'stage', 'time', 'result', 'error']
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map(c => (c[i] as string).length)))
  const line = (c: string[]) =>
    c
      .map((v, i) => (i === 4 ? v.padStart(widths[i] as number) : v.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd()
  return [line(header), ...cells.map(line)]
}

/** The hosts with an error of their own (failed, could not be put back, skipped as unreachable), in order. */
export function failedHosts(rows: readonly HostRow[]): string[] {
  return rows.filter(r => r.error && r.result !== 'ok').map(r => r.name)
}
