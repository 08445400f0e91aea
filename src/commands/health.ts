import { sh } from './quote.js'
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
  const secs = Math.max(1, Math.ceil(timeoutMs / 1000))
  const curlHeaders = Object.entries(headers)
    .map(([k, v]) => ` -H ${sh(`${k}: ${v}`)}`)
    .join('')
  const wgetHeaders = Object.entries(headers)
    .map(([k, v]) => ` --header=${sh(`${k}: ${v}`)}`)
    .join('')
  return {
    label: `GET ${url}`,
    script: script(
      `url=${sh(url)}`,
      'if command -v curl >/dev/null 2>&1; then',
      `  code=$(curl -g -sS -o /dev/stdout -w '\\nHTTP_STATUS=%{http_code}' --max-time ${secs}${curlHeaders} "$url" 2>/dev/null) || true`,
      '  printf "%s\\n" "$code"',
      '  case "$code" in *HTTP_STATUS=*) ;; *) echo HTTP_STATUS=000 ;; esac',
      'elif command -v wget >/dev/null 2>&1; then',
      `  hdr=$(mktemp) || exit 1`,
      `  body=$(wget -q -S -O - -T ${secs} -t 1${wgetHeaders} "$url" 2>"$hdr") || true`,
      '  status=$(sed -n "s/^ *HTTP\\/[0-9.]* \\([0-9][0-9][0-9]\\).*/\\1/p" "$hdr" | tail -n 1)',
      '  rm -f "$hdr"',
      '  printf "%s\\nHTTP_STATUS=%s\\n" "$body" "${status:-000}"',
      'else echo "neither curl nor wget is installed on this host; install one or use verify.http.from: runner" >&2; exit 127',
      'fi'
    )
  }
}

export function parseProbe(stdout: string): { status: number; body: string } {
  const i = stdout.lastIndexOf('HTTP_STATUS=')
  if (i < 0) return { status: 0, body: stdout }
  const status = Number.parseInt(stdout.slice(i + 'HTTP_STATUS='.length).trim(), 10)
  return { status: Number.isFinite(status) ? status : 0, body: stdout.slice(0, i).replace(/\n$/, '') }
}
