/**
 * A tiny deployable Node.js app (no dependencies) for the e2e tests, plus helpers to talk to it.
 *
 * Layout written by writeApp(dir):
 *   server.js    http server on $PORT (optionally bound to $HOST): GET /health -> 200 `ok <version>` (or 500
 *                `unhealthy <version>`), GET / -> `version <version>`; exits(1) crashAfterMs after start, printing a Python-style traceback to stderr
 *   VERSION      the version string
 *   bin/restart  POSIX sh: stops the instance whose pid is in $PID_FILE, starts `node server.js` detached,
 *                writes the new pid to $PID_FILE and returns at once (env: PORT, PID_FILE required;
 *                APP_LOG default /dev/null; NODE default: the node running the tests, else `node` on PATH)
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { isProcessAlive } from './sshd.js'

export interface AppOptions {
  version: string
  /** Default true; when false GET /health answers 500. */
  healthy?: boolean
  /** When set, the server exits with status 1 this many ms after start. */
  crashAfterMs?: number
}

function serverSource(opts: AppOptions): string {
  const version = JSON.stringify(opts.version)
  const healthy = opts.healthy ?? true
  const crash =
    opts.crashAfterMs === undefined
      ? ''
      : `setTimeout(() => { console.error('Traceback (most recent call last):\\n  File "app.py", line 7, in poll\\nRuntimeError: lost the database connection'); process.exit(1) }, ${opts.crashAfterMs})\n`
  // Works whether Node treats this file as CommonJS or as an ES module (dynamic import exists in both).
  return `'use strict'
const VERSION = ${version}
const HEALTHY = ${JSON.stringify(healthy)}
${crash}import('node:http').then(({ default: http }) => {
  const server = http.createServer((req, res) => {
    const url = (req.url || '/').split('?')[0]
    let status = 404
    let body = 'not found'
    if (req.method === 'GET' && url === '/health') {
      status = HEALTHY ? 200 : 500
      body = (HEALTHY ? 'ok ' : 'unhealthy ') + VERSION
    } else if (req.method === 'GET' && url === '/') {
      status = 200
      body = 'version ' + VERSION
    }
    res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' })
    res.end(body)
  })
  const port = Number(process.env.PORT)
  if (!Number.isInteger(port) || port <= 0) {
    console.error('server.js: PORT must be set')
    process.exit(2)
  }
  server.listen(port, process.env.HOST || undefined, () => {
    console.log('listening on ' + port + ' (version ' + VERSION + ', pid ' + process.pid + ')')
  })
  process.on('SIGTERM', () => {
    server.close()
    process.exit(0)
  })
})
`
}

function restartScript(): string {
  const defaultNode = process.execPath.replace(/'/g, `'\\''`)
  return `#!/bin/sh
# Restarts the fixture app: stops the instance whose pid is in $PID_FILE, then starts a new one detached.
set -eu

if [ -z "\${PORT:-}" ]; then echo "bin/restart: PORT is not set" >&2; exit 2; fi
if [ -z "\${PID_FILE:-}" ]; then echo "bin/restart: PID_FILE is not set" >&2; exit 2; fi
APP_LOG="\${APP_LOG:-/dev/null}"
if [ -z "\${NODE:-}" ]; then
  NODE='${defaultNode}'
  [ -x "$NODE" ] || NODE=node
fi
export PORT

# 0 when $1 is a live (non-zombie) instance of this fixture (so a recycled pid is never killed).
running() {
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  state=\${stat##*") "}
  state=\${state%% *}
  [ "$state" != Z ] || return 1
  tr '\\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q 'server\\.js' || return 1
}

old=$(cat "$PID_FILE" 2>/dev/null || true)
case "$old" in
  ''|*[!0-9]*) old='' ;;
esac
if [ -n "$old" ] && running "$old"; then
  kill -TERM "$old" 2>/dev/null || true
  i=0
  while running "$old" && [ "$i" -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  if running "$old"; then
    kill -KILL "$old" 2>/dev/null || true
    sleep 0.1
  fi
fi

cd "$(dirname "$0")/.."
mkdir -p "$(dirname "$PID_FILE")"
nohup setsid "$NODE" server.js >> "$APP_LOG" 2>&1 < /dev/null &
echo $! > "$PID_FILE.tmp"
mv "$PID_FILE.tmp" "$PID_FILE"
echo "started pid $(cat "$PID_FILE")"
`
}

/** Writes the fixture app (server.js, VERSION, bin/restart) into dir (created if missing). */
export function writeApp(dir: string, opts: AppOptions): void {
  mkdirSync(path.join(dir, 'bin'), { recursive: true })
  writeFileSync(path.join(dir, 'server.js'), serverSource(opts))
  writeFileSync(path.join(dir, 'VERSION'), `${opts.version}\n`)
  const restart = path.join(dir, 'bin', 'restart')
  writeFileSync(restart, restartScript())
  chmodSync(restart, 0o755)
}

/** The pid recorded in pidFile, or undefined. */
export function readPid(pidFile: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/** Whether pid is a live process; a zombie counts as stopped (one implementation, in sshd.ts). */
export const isRunning = isProcessAlive

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Stops the app whose pid is in pidFile (TERM, then KILL after 5 s). No-op when it is not running. */
export async function stopApp(pidFile: string): Promise<void> {
  const pid = readPid(pidFile)
  if (pid === undefined || !isRunning(pid)) return
  try {
    process.kill(pid, 'SIGTERM')
  } catch {
    return
  }
  const deadline = Date.now() + 5000
  while (isRunning(pid) && Date.now() < deadline) await sleep(50)
  if (isRunning(pid)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone
    }
    while (isRunning(pid) && Date.now() < deadline + 2000) await sleep(50)
  }
}

export interface HttpResult {
  /** HTTP status; 0 when the connection was refused or failed, or the request timed out. */
  status: number
  body: string
  /** Error code when status is 0 (ECONNREFUSED, ECONNRESET, TIMEOUT, ...). */
  error?: string
}

/** GET url with a short timeout; never rejects. */
export function httpGet(url: string, timeoutMs = 2000): Promise<HttpResult> {
  return new Promise(resolve => {
    let settled = false
    const finish = (r: HttpResult): void => {
      if (!settled) {
        settled = true
        resolve(r)
      }
    }
    const req = http.get(url, { agent: false, timeout: timeoutMs }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => finish({ status: res.statusCode ?? 0, body }))
      res.on('error', err =>
        finish({ status: 0, body, error: (err as NodeJS.ErrnoException).code ?? err.message })
      )
    })
    req.on('timeout', () => {
      finish({ status: 0, body: '', error: 'TIMEOUT' })
      req.destroy()
    })
    req.on('error', err =>
      finish({ status: 0, body: '', error: (err as NodeJS.ErrnoException).code ?? err.message })
    )
  })
}

/** Polls fn until it returns a truthy value (returned) or timeoutMs passes (throws with `what`). */
export async function waitFor<T>(
  what: string,
  fn: () => T | Promise<T>,
  timeoutMs = 10_000,
  intervalMs = 100
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  let last: T | undefined
  for (;;) {
    last = await fn()
    if (last) return last as NonNullable<T>
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`)
    }
    await sleep(intervalMs)
  }
}

export interface BotOptions {
  version: string
  /** Default true; when false the bot runs but never touches its heartbeat (a hung poll loop). */
  beats?: boolean
}

/**
 * A long-polling bot like a Telegram one, in POSIX sh. Every 0.2 s it "polls": when another instance polls
 * the same token (a live pid registered in $BOT_POLLERS other than its own) it logs what Telegram answers then,
 * `409 Conflict: terminated by other getUpdates request`; else it touches $HEARTBEAT. Log lines start with
 * the epoch second (so a logs command can take those since a time).
 *   bin/bot      the poll loop (env: BOT_POLLERS, HEARTBEAT, APP_LOG)
 *   bin/restart  starts a new instance, then stops the old one a second later (start-before-stop, like
 *                `docker compose up -d` with a new container): the two overlap
 *   bin/stop     stops the instance whose pid is in $PID_FILE and waits until it is gone
 */
export function writeBot(dir: string, opts: BotOptions): void {
  mkdirSync(path.join(dir, 'bin'), { recursive: true })
  writeFileSync(path.join(dir, 'VERSION'), `${opts.version}\n`)
  const files: Record<string, string> = {
    bot: `#!/bin/sh
set -u
mkdir -p "$BOT_POLLERS"
me=$$
touch "$BOT_POLLERS/$me"
trap 'rm -f "$BOT_POLLERS/$me"; exit 0' TERM INT
log() { echo "$(date +%s) [bot ${opts.version} pid $me] $*" >> "$APP_LOG"; }
log "started polling"
while :; do
  conflict=
  for f in "$BOT_POLLERS"/*; do
    p=\${f##*/}
    [ "$p" = "$me" ] && continue
    [ -e "$f" ] || continue
    if kill -0 "$p" 2>/dev/null; then conflict=1; else rm -f "$f"; fi
  done
  if [ -n "$conflict" ]; then
    log "telegram.error.Conflict: 409 Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
  elif ${opts.beats === false ? 'false' : 'true'}; then
    touch "$HEARTBEAT"
  fi
  sleep 0.2
done
`,
    restart: `#!/bin/sh
set -eu
old=$(cat "$PID_FILE" 2>/dev/null || true)
cd "$(dirname "$0")/.."
nohup setsid sh bin/bot >> "$APP_LOG" 2>&1 < /dev/null &
echo $! > "$PID_FILE"
if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then
  sleep 1
  kill -TERM "$old" 2>/dev/null || true
fi
echo "started pid $(cat "$PID_FILE")"
`,
    stop: `#!/bin/sh
set -u
pid=$(cat "$PID_FILE" 2>/dev/null || true)
[ -n "$pid" ] || exit 0
kill -TERM "$pid" 2>/dev/null || exit 0
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
echo "stopped pid $pid"
`
  }
  for (const [name, text] of Object.entries(files)) {
    writeFileSync(path.join(dir, 'bin', name), text)
    chmodSync(path.join(dir, 'bin', name), 0o755)
  }
}
