import { sh } from './quote.js'
import type { Layout } from './layout.js'
import { script, type RemoteCommand } from './command.js'

/**
 * One HTTP request from the host, with curl or else wget. Prints the body, then a last line
 * `HTTP_STATUS=<code>` (000 when nothing answered).
 */
export function httpProbe(
  url: string,
  timeoutMs: number,
  headers: Record<string, string> = {}
): RemoteCommand {
  return {
    label: `GET ${url}`,
    script: script(
      `url=${sh(url)}`,
      ...probeLines(timeoutMs, headers),
      'printf "%s\\nHTTP_STATUS=%s\\n" "$body" "$status"'
    )
  }
}

/** Sets $status (000 when nothing answered) and $body for one GET of $url; exit 127 without curl or wget. */
function probeLines(timeoutMs: number, headers: Record<string, string>): string[] {
  const secs = Math.max(1, Math.ceil(timeoutMs / 1000))
  const curlHeaders = Object.entries(headers)
    .map(([k, v]) => ` -H ${sh(`${k}: ${v}`)}`)
    .join('')
  const wgetHeaders = Object.entries(headers)
    .map(([k, v]) => ` --header=${sh(`${k}: ${v}`)}`)
    .join('')
  return [
    'if command -v curl >/dev/null 2>&1; then',
    `  out=$(curl -g -sS -o /dev/stdout -w '\\nHTTP_STATUS=%{http_code}' --max-time ${secs}${curlHeaders} "$url" 2>/dev/null) || true`,
    '  case "$out" in *HTTP_STATUS=*) status=${out##*HTTP_STATUS=}; body=${out%HTTP_STATUS=*}; body=${body%?} ;; *) status=000; body= ;; esac',
    'elif command -v wget >/dev/null 2>&1; then',
    `  hdr=$(mktemp) || exit 1`,
    `  body=$(wget -q -S -O - -T ${secs} -t 1${wgetHeaders} "$url" 2>"$hdr") || true`,
    '  status=$(sed -n "s/^ *HTTP\\/[0-9.]* \\([0-9][0-9][0-9]\\).*/\\1/p" "$hdr" | tail -n 1)',
    '  rm -f "$hdr"',
    '  status=${status:-000}',
    'else echo "neither curl nor wget is installed on this host; install one or use verify.http.from: runner" >&2; exit 127',
    'fi'
  ]
}

export interface ProbeLoop {
  url: string
  timeoutMs: number
  headers: Record<string, string>
  retries: number
  intervalMs: number
  expectStatus: number
  contains?: string
}

/**
 * The whole retry loop of an HTTP check in one command on the host: one round trip however many attempts.
 * Progress lines go to stderr as they happen; stdout ends with the last body and `HTTP_STATUS=`,
 * `ATTEMPTS=`, `PASSED=` lines.
 */
export function httpProbeLoop(p: ProbeLoop): RemoteCommand {
  const pause = (Math.max(0, p.intervalMs) / 1000).toFixed(3)
  return {
    label: `GET ${p.url}`,
    stream: true,
    script: script(
      `url=${sh(p.url)}`,
      `tries=${Math.max(1, Math.floor(p.retries))}`,
      `expect=${sh(p.expectStatus)}`,
      `want=${sh(p.contains ?? '')}`,
      `has_want=${p.contains === undefined ? 0 : 1}`,
      'i=1',
      'while :; do',
      ...probeLines(p.timeoutMs, p.headers).map(l => `  ${l}`),
      '  ok=0',
      '  if [ "$status" = "$expect" ]; then',
      '    if [ "$has_want" = 0 ]; then ok=1; else case "$body" in *"$want"*) ok=1 ;; esac; fi',
      '  fi',
      '  if [ "$status" = 000 ]; then seen="no answer (connection refused or timed out)"',
      `  else seen="HTTP $status \\"$(printf %s "$body" | tr -s '\\n\\t' '  ' | cut -c1-120)\\""; fi`,
      '  if [ "$ok" = 1 ]; then printf \'GET %s: HTTP %s (attempt %s/%s)\\n\' "$url" "$status" "$i" "$tries" >&2; break; fi',
      '  [ "$i" -ge "$tries" ] && break',
      `  printf 'GET %s: %s; attempt %s/%s, retrying in %s s\\n' "$url" "$seen" "$i" "$tries" ${sh(String(Number(pause)))} >&2`,
      `  sleep ${pause}`,
      '  i=$((i + 1))',
      'done',
      'printf "%s\\nHTTP_STATUS=%s\\nATTEMPTS=%s\\nPASSED=%s\\n" "$body" "$status" "$i" "$ok"'
    )
  }
}

/** Reads what httpProbeLoop printed. */
export function parseProbeLoop(stdout: string): {
  status: number
  body: string
  attempts: number
  passed: boolean
} {
  const m = /\nHTTP_STATUS=(\d+)\nATTEMPTS=(\d+)\nPASSED=([01])\n?$/.exec(stdout)
  if (!m) return { status: 0, body: stdout, attempts: 0, passed: false }
  return {
    status: Number(m[1]),
    body: stdout.slice(0, m.index),
    attempts: Number(m[2]),
    passed: m[3] === '1'
  }
}

export function parseProbe(stdout: string): { status: number; body: string } {
  const i = stdout.lastIndexOf('HTTP_STATUS=')
  if (i < 0) return { status: 0, body: stdout }
  const status = Number.parseInt(stdout.slice(i + 'HTTP_STATUS='.length).trim(), 10)
  return { status: Number.isFinite(status) ? status : 0, body: stdout.slice(0, i).replace(/\n$/, '') }
}

/**
 * verify.heartbeat, measured on the host with its own clock: `file` (relative to the release) must have been
 * touched at or after `current` was switched and at most `maxAge` s ago. Retries once a second for up to
 * `maxAge` s (a bot beats on its first poll), then prints `HEARTBEAT=fresh|old|stale|missing` and `AGE=<s>`.
 */
export function heartbeatProbe(layout: Layout, release: string, file: string, maxAge: number): RemoteCommand {
  return {
    label: `heartbeat ${file}`,
    script: script(
      `cd ${sh(layout.release(release))} || exit 1`,
      `f=${sh(file)}; max=${sh(maxAge)}; waited=0; age=`,
      `switched=$(stat -c %Y ${sh(layout.current)} 2>/dev/null || echo 0)`,
      'while :; do',
      '  now=$(date +%s)',
      '  if [ -e "$f" ]; then',
      '    m=$(stat -L -c %Y "$f"); age=$((now - m))',
      '    if [ "$m" -ge "$switched" ] && [ "$age" -le "$max" ]; then state=fresh; break; fi',
      '    if [ "$m" -lt "$switched" ]; then state=old; else state=stale; fi',
      '  else state=missing; fi',
      '  [ "$waited" -ge "$max" ] && break',
      '  sleep 1; waited=$((waited + 1))',
      'done',
      `printf 'HEARTBEAT=%s\\nAGE=%s\\n' "$state" "$age"`
    )
  }
}
