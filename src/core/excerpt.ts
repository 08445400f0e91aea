/**
 * Short excerpts of a command's output for error messages and verdicts: the lines that explain the failure,
 * not whatever happened to be printed last. A Python traceback ends in the exception line
 * (`sqlalchemy.exc.ProgrammingError: ... relation "userz" does not exist`), then SQLAlchemy adds the SQL and
 * a "Background on this error at: https://sqlalche.me/..." line; the exception line is the one to keep.
 */

/** Lines that never explain anything on their own: SQLAlchemy's footer, blank lines. */
const NOISE = [/^\s*\(Background on this error at: \S+\)\s*$/, /^\s*$/]

/** An unindented exception line: `ValueError: x`, `sqlalchemy.exc.ProgrammingError: (...) ...`, `KeyError`. */
const PYTHON_EXCEPTION =
  /^(?:[A-Za-z_][A-Za-z0-9_]*\.)*[A-Za-z_][A-Za-z0-9_]*(?:Error|Exception|Exit|Interrupt|Failure|Fault|Warning)(?::\s|$)/

/** Other tools' own error lines (psql, git, PHP's SQLSTATE, node). */
const ERROR_LINE = /^(?:ERROR|FATAL|PANIC|Error|error|fatal|SQLSTATE\[[0-9A-Z]+\]):?\s/

const isNoise = (line: string) => NOISE.some(re => re.test(line))

/**
 * The prefix a log command puts before each line of the app's output: `docker compose logs`
 * (`master_bot-1  | `), podman's container id (`2b5a1d12fa09 `), journalctl's short format
 * (`Dec 01 13:00:00 fs bot[812]: `).
 */
const LOG_PREFIX = /^(?:[\w.-]+\s+\| ?|[0-9a-f]{12} |[A-Z][a-z]{2} [ \d]\d [\d:]{8} \S+ [^\s:]+: )/

/** A line as the app printed it: without a log command's prefix. */
const bare = (line: string) => line.replace(LOG_PREFIX, '')

/** The index of the line that explains the failure: the last (Python) exception line, else the last error line. */
function explainingIndex(lines: readonly string[]): number | undefined {
  // after a traceback's start when it is there (an excerpt may have cut it off)
  const traceback = lines.findIndex(l => l.includes('Traceback (most recent call last):'))
  for (let i = lines.length - 1; i > traceback; i--) if (PYTHON_EXCEPTION.test(bare(lines[i] ?? ''))) return i
  for (let i = lines.length - 1; i >= 0; i--) if (ERROR_LINE.test(bare((lines[i] ?? '').trim()))) return i
  return undefined
}

/**
 * The last `n` lines of a command's output, without trailing noise; when the line that explains the failure
 * is further up, it takes the first place, so that it is never cut off.
 */
export function lastLines(text: string, n: number): string {
  const lines = text
    .trim()
    .split('\n')
    .filter(l => !isNoise(l))
  if (lines.length <= n) return lines.join('\n')
  const key = explainingIndex(lines)
  if (key !== undefined && key < lines.length - n)
    return [lines[key] as string, ...lines.slice(lines.length - n + 1)].join('\n')
  return lines.slice(-n).join('\n')
}

/**
 * A multi-line error in one line for the verdict: its first line (what failed, where) and the line that
 * explains it (the exception line of a traceback, a tool's `ERROR:` line), else its last meaningful line.
 */
export function oneLine(message: string): string {
  const raw = message.split('\n').filter(l => !isNoise(l))
  const lines = raw.map(l => l.trim())
  const first = lines[0] ?? ''
  if (lines.length < 2) return first
  const key = explainingIndex(raw)
  if (key === undefined || key === 0) return `${first} … ${lines.at(-1)}`
  // the explaining line replaces the fragment of output that follows `(exit N):` on the first line
  const head = first
    .replace(/(\(exit \d+\)):\s.*$/, '$1')
    .replace(/:\s*Traceback \(most recent call last\):$/, '')
  return `${head} … ${lines[key]}`
}
