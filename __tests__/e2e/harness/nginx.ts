/**
 * A real nginx for the blue-green e2e tests and the downtime benchmark: its own prefix dir (config, pid,
 * logs, temp paths), listening on a free port on 127.0.0.1, proxying everything to `upstream app`, whose
 * servers come from an included upstream file that safe-deploy rewrites. `reloadCommand` is what a config's
 * `switch.proxy_reload` runs (`nginx -t` first, so a broken upstream file fails the reload instead of
 * being ignored by the running master).
 *
 * Also: writeBlueGreenApp, the e2e fixture app plus `bin/start` and `bin/stop` scripts that honour $PORT
 * (one pid file per port under $SAFE_DEPLOY_SHARED), as a user's blue-green app would have.
 */
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { writeApp, type AppOptions } from './app.js'
import { freePort, isProcessAlive, tempDir } from './sshd.js'

export const NGINX = '/usr/sbin/nginx'

export interface Nginx {
  /** Port nginx listens on (127.0.0.1). */
  port: number
  /** Prefix dir: nginx.conf, nginx.pid, error.log, access.log, tmp/. */
  dir: string
  conf: string
  /** The file included inside `upstream app { ... }`. */
  upstreamFile: string
  errorLog: string
  /** Tests the config, then signals the master to reload: use as switch.proxy_reload. */
  reloadCommand: string
  /** `http://127.0.0.1:<port>` */
  url: string
  /** pid of the master process. */
  pid: number
  stop(): Promise<void>
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

function isPortOpen(port: number): Promise<boolean> {
  return new Promise(resolve => {
    const socket = net.connect({ host: '127.0.0.1', port })
    const done = (open: boolean): void => {
      socket.removeAllListeners()
      socket.on('error', () => undefined)
      socket.destroy()
      resolve(open)
    }
    socket.setTimeout(500, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** Double quotes for nginx.conf (temp paths have no quotes or backslashes, but be safe). */
function nq(s: string): string {
  return `"${s.replace(/["\\]/g, c => `\\${c}`)}"`
}

function config(dir: string, port: number, upstreamFile: string): string {
  const tmp = (n: string) => nq(path.join(dir, 'tmp', n))
  return `# written by __tests__/e2e/harness/nginx.ts
user root;
worker_processes 1;
pid ${nq(path.join(dir, 'nginx.pid'))};
error_log ${nq(path.join(dir, 'error.log'))} notice;

events {
  worker_connections 1024;
}

http {
  access_log ${nq(path.join(dir, 'access.log'))};
  client_body_temp_path ${tmp('client_body')};
  proxy_temp_path ${tmp('proxy')};
  fastcgi_temp_path ${tmp('fastcgi')};
  uwsgi_temp_path ${tmp('uwsgi')};
  scgi_temp_path ${tmp('scgi')};

  upstream app {
    include ${nq(upstreamFile)};
  }

  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_connect_timeout 2s;
      proxy_read_timeout 10s;
    }
  }
}
`
}

/**
 * proxy_reload for the tests: test the config, signal the master, then wait (at most 5 s) until none of the
 * workers that ran before is left, so that when it returns every request is served with the new upstream
 * (after 5 s it gives up waiting, says so, and succeeds: old workers may be finishing long requests).
 * (`nginx -s reload` alone returns before the master has even read the new config.)
 */
const RELOAD = `set -e
nginx() { @NGINX@ "$@"; }
nginx -t -q
master=$(cat @PIDFILE@)
old=$(ps -o pid= --ppid "$master" | tr -s ' \\n' ' ')
nginx -s reload
i=0
while [ "$i" -lt 100 ]; do
  now=$(ps -o pid= --ppid "$master" | tr -s ' \\n' ' ')
  left=0
  for p in $now; do case " $old " in *" $p "*) left=1 ;; esac; done
  [ -n "$now" ] && [ "$left" = 0 ] && exit 0
  sleep 0.05
  i=$((i + 1))
done
echo "nginx: old workers still finishing requests 5 s after the reload" >&2
`

/** A watchdog that stops nginx (SIGQUIT, then SIGTERM) once this process is gone, like sshd's. */
const WATCHDOG = `
while kill -0 "$1" 2>/dev/null; do
  [ -f "$3" ] || exit 0
  sleep 1
done
[ -f "$3" ] && kill -TERM "$2" 2>/dev/null
exit 0`

/**
 * Starts nginx with an upstream file that names `initialPort` (an upstream block needs a server to start).
 * Throws with the error log's tail when it does not come up within 10 s.
 */
export async function startNginx(opts: { initialPort: number }): Promise<Nginx> {
  if (!existsSync(NGINX))
    throw new Error(`${NGINX} is missing; the jest globalSetup should have installed nginx`)
  const dir = tempDir('safe-deploy-e2e-nginx-')
  for (const t of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'])
    mkdirSync(path.join(dir, 'tmp', t), { recursive: true })
  const conf = path.join(dir, 'nginx.conf')
  const upstreamFile = path.join(dir, 'upstream.conf')
  const errorLog = path.join(dir, 'error.log')
  const pidFile = path.join(dir, 'nginx.pid')
  writeFileSync(upstreamFile, `server 127.0.0.1:${opts.initialPort};\n`)
  const base = [NGINX, '-p', dir, '-c', conf, '-e', errorLog]

  let port = 0
  let pid = 0
  for (let attempt = 0; attempt < 5 && !pid; attempt++) {
    port = await freePort()
    writeFileSync(conf, config(dir, port, upstreamFile))
    const [cmd, ...args] = base as [string, ...string[]]
    const res = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 })
    if (res.status !== 0) {
      if (/Address already in use/.test(res.stderr)) continue
      throw new Error(`nginx failed to start (exit ${res.status}): ${res.stderr}\n${tail(errorLog)}`)
    }
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const p = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0
      if (p > 0 && isProcessAlive(p) && (await isPortOpen(port))) {
        pid = p
        break
      }
      await sleep(50)
    }
    if (!pid) throw new Error(`nginx did not listen on 127.0.0.1:${port} within 10 s:\n${tail(errorLog)}`)
  }
  if (!pid) throw new Error(`nginx: no free port after 5 attempts:\n${tail(errorLog)}`)

  const watchdog = spawn(
    '/bin/sh',
    ['-c', WATCHDOG, 'nginx-watchdog', String(process.pid), String(pid), pidFile],
    {
      detached: true,
      stdio: 'ignore'
    }
  )
  watchdog.unref()

  const quoted = base.map(a => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
  const reloadScript = path.join(dir, 'reload.sh')
  writeFileSync(
    reloadScript,
    RELOAD.replace('@NGINX@', () => quoted).replace('@PIDFILE@', () => nq(pidFile))
  )
  let stopping: Promise<void> | undefined
  return {
    port,
    dir,
    conf,
    upstreamFile,
    errorLog,
    reloadCommand: `sh ${nq(reloadScript)}`,
    url: `http://127.0.0.1:${port}`,
    pid,
    stop: () =>
      (stopping ??= (async () => {
        if (watchdog.pid) {
          try {
            process.kill(watchdog.pid, 'SIGKILL')
          } catch {
            // gone
          }
        }
        try {
          process.kill(pid, 'SIGTERM')
        } catch {
          return
        }
        const deadline = Date.now() + 10_000
        while (Date.now() < deadline && (isProcessAlive(pid) || (await isPortOpen(port)))) await sleep(50)
        if (isProcessAlive(pid)) process.kill(pid, 'SIGKILL')
      })())
  }
}

/** The master's workers (to tell a finished reload: the old workers are gone, new ones serve). */
export function workerPids(master: number): number[] {
  const r = spawnSync('/bin/sh', ['-c', `ps -o pid= --ppid ${master}`], { encoding: 'utf8' })
  return r.stdout
    .split('\n')
    .map(l => Number(l.trim()))
    .filter(n => n > 0)
}

const START = `#!/bin/sh
# Starts this release on $PORT (blue-green): one pid file per port, so the two colours never touch.
set -eu
: "\${PORT:?PORT is not set}"
: "\${SAFE_DEPLOY_SHARED:?SAFE_DEPLOY_SHARED is not set}"
PID_FILE="$SAFE_DEPLOY_SHARED/app-$PORT.pid"
export PID_FILE
exec "$(dirname "$0")/restart"
`

const STOP = `#!/bin/sh
# Stops whatever this app runs on $PORT; nothing there is fine (exit 0). A zombie counts as stopped.
set -eu
: "\${PORT:?PORT is not set}"
: "\${SAFE_DEPLOY_SHARED:?SAFE_DEPLOY_SHARED is not set}"
PID_FILE="$SAFE_DEPLOY_SHARED/app-$PORT.pid"
running() {
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  state=\${stat##*") "}
  state=\${state%% *}
  [ "$state" != Z ] || return 1
  tr '\\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q 'server\\.js' || return 1
}
pid=$(cat "$PID_FILE" 2>/dev/null || true)
case "$pid" in ''|*[!0-9]*) echo "nothing runs on port $PORT"; exit 0 ;; esac
if running "$pid"; then
  kill -TERM "$pid" 2>/dev/null || true
  i=0
  while running "$pid" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.1; fi
  echo "stopped pid $pid on port $PORT"
else
  echo "pid $pid on port $PORT is not running"
fi
rm -f "$PID_FILE"
`

/** The fixture app (see app.ts) plus bin/start and bin/stop for blue-green: `switch.start: bin/start`. */
export function writeBlueGreenApp(dir: string, opts: AppOptions): void {
  writeApp(dir, opts)
  for (const [name, text] of [
    ['start', START],
    ['stop', STOP]
  ] as const) {
    const file = path.join(dir, 'bin', name)
    writeFileSync(file, text)
    chmodSync(file, 0o755)
  }
}

/** The pid file bin/start writes for `port` under a deploy root's shared dir. */
export function portPidFile(root: string, port: number): string {
  return path.join(root, 'shared', `app-${port}.pid`)
}
