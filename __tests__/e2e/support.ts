/**
 * Shared set-up for the end-to-end tests: a project on the "runner" (a temp dir with the app source and a
 * safe-deploy.yml) deploying to real sshd hosts on loopback, driven through the real CLI entry (runCli).
 */
import { createHash } from 'node:crypto'
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
  existsSync,
  readlinkSync,
  readdirSync
} from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { stringify } from 'yaml'
import { runCli } from '../../src/platform/cli.js'
import { writeApp, stopApp, httpGet, type AppOptions } from './harness/app.js'
import { authorizeKeyOf, freePort, tempDir, type SshHost } from './harness/sshd.js'
import { readFileCommands } from './harness/cliproc.js'

export interface CliRun {
  code: number
  stdout: string
  stderr: string
}

/** Runs the CLI in this process, as `safe-deploy <args>` would, with the given environment. */
export async function cli(args: string[], env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<CliRun> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.on('data', c => (out += String(c)))
  stderr.on('data', c => (err += String(c)))
  const code = await runCli(args, { stdout, stderr, env, signal })
  return { code, stdout: out, stderr: err }
}

export interface Project {
  dir: string
  configFile: string
  env: NodeJS.ProcessEnv
  port: number
  /** Writes app version `v` into the source dir (replacing the previous one). */
  app(opts: AppOptions): void
  deploy(extra?: string[]): Promise<CliRun>
  run(args: string[]): Promise<CliRun>
  logDir: string
}

export interface ProjectOptions {
  hosts: SshHost[]
  /** Deploy root on every host (default: a fresh dir per host is impossible with one config, so one path). */
  root: string
  config?: (base: Record<string, unknown>) => Record<string, unknown>
  envExtra?: NodeJS.ProcessEnv
  /** Deploy to this machine (`hosts: [{ local: true }]`, src/transport/local.ts) instead of `hosts`. */
  local?: boolean
}

/** A config like the issue's example, pointed at the test hosts. */
export async function project(opts: ProjectOptions): Promise<Project> {
  const dir = tempDir('safe-deploy-project-')
  const port = await freePort()
  const src = join(dir, 'app')
  mkdirSync(src, { recursive: true })
  const first = opts.hosts[0]
  if (!first && !opts.local) throw new Error('project needs a host')
  const base: Record<string, unknown> = {
    app: 'ledger',
    path: opts.root,
    hosts: opts.local
      ? [{ local: true }]
      : opts.hosts.map(h => ({ address: h.address, port: h.port, user: 'root' })),
    ...(opts.local
      ? {}
      : { ssh: { private_key: 'env:SSH_KEY', known_hosts: 'env:KNOWN_HOSTS', connect_retries: 1 } }),
    source: { dir: './app', exclude: ['.git', 'node_modules'] },
    shared: { files: ['.env'], dirs: ['data', 'logs'] },
    keep_releases: 5,
    env: {
      PORT: String(port),
      PID_FILE: `${opts.root}/shared/app.pid`,
      APP_LOG: `${opts.root}/shared/logs/app.log`
    },
    stages: { build: 'echo built > BUILD_OK', restart: 'bin/restart' },
    verify: {
      http: { url: `http://127.0.0.1:${port}/health`, expect_status: 200, retries: 10, interval: '300ms' }
    }
  }
  const config = opts.config ? opts.config(base) : base
  const configFile = join(dir, 'safe-deploy.yml')
  writeFileSync(configFile, stringify(config))
  // What a person does once per host: the shared .env the app needs.
  if (opts.local) {
    mkdirSync(join(opts.root, 'shared'), { recursive: true })
    writeFileSync(join(opts.root, 'shared', '.env'), 'SECRET=from-shared\n')
  }
  for (const h of opts.hosts) {
    h.run(
      `mkdir -p ${q(`${opts.root}/shared`)} && printf 'SECRET=from-shared\\n' > ${q(`${opts.root}/shared/.env`)}`
    )
  }
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    ...(first
      ? { SSH_KEY: first.privateKey, KNOWN_HOSTS: opts.hosts.map(h => h.knownHostsLine).join('\n') }
      : {}),
    ...opts.envExtra
  }
  const logDir = join(dir, 'safe-deploy-logs')
  const p: Project = {
    dir,
    configFile,
    env,
    port,
    logDir,
    app: a => writeApp(src, a),
    run: args => cli([...args, '--config', configFile], env),
    deploy: extra => cli(['deploy', '--config', configFile, ...(extra ?? [])], env)
  }
  // the log dir is relative to the working directory: run from the project dir
  process.chdir(dir)
  return p
}

type Config = Record<string, unknown>

/**
 * A project on `host` with small timeouts and retries (1 connect retry, 3 s connect timeout, 1 s keepalive, 6
 * health attempts 250 ms apart), so that a failing case fails in seconds; `config` changes it further. The
 * app's pid file is `<root>/shared/app.pid` (stop it with stopApp).
 */
export async function quickProject(
  host: SshHost,
  name: string,
  config: (c: Config) => Config = c => c
): Promise<{ p: Project; root: string; pidFile: string }> {
  const root = host.root(name)
  const p = await project({
    hosts: [host],
    root,
    config: base =>
      config({
        ...base,
        ssh: { ...(base.ssh as Config), connect_retries: 1, connect_timeout: '3s', keepalive_interval: '1s' },
        verify: { http: { ...((base.verify as Config).http as Config), retries: 6, interval: '250ms' } }
      })
  })
  return { p, root, pidFile: join(root, 'shared', 'app.pid') }
}

/**
 * One GitHub Action step of `p` (each step gets its own runner files: GITHUB_OUTPUT, GITHUB_STATE,
 * GITHUB_STEP_SUMMARY) and the environment the runner gives it; `extra` sets inputs (INPUT_COMMAND, ...).
 */
export function actionStep(p: Project, name: string, extra: NodeJS.ProcessEnv = {}) {
  const dir = tempDir(`gh-${name}-`)
  const files = {
    GITHUB_OUTPUT: join(dir, 'output'),
    GITHUB_STATE: join(dir, 'state'),
    GITHUB_STEP_SUMMARY: join(dir, 'summary.md')
  }
  for (const f of Object.values(files)) writeFileSync(f, '')
  const env: NodeJS.ProcessEnv = {
    ...p.env,
    ...files,
    GITHUB_ACTIONS: 'true',
    GITHUB_ACTOR: 'octocat',
    INPUT_COMMAND: 'deploy',
    INPUT_CONFIG: p.configFile,
    INPUT_VERBOSE: 'false',
    ...extra
  }
  return {
    env,
    outputs: () => readFileCommands(readFileSync(files.GITHUB_OUTPUT, 'utf8')),
    state: () => readFileCommands(readFileSync(files.GITHUB_STATE, 'utf8')),
    summary: () => readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8')
  }
}

/** The STATE_<name> variables the runner passes to the post step. */
export function stateEnv(state: Record<string, string>): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(state).map(([k, v]) => [`STATE_${k}`, v]))
}

/** Single quotes for the local test shell (the product's own quoting is under test elsewhere). */
export function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

export function currentOf(root: string): string | undefined {
  try {
    return readlinkSync(join(root, 'current'))
  } catch {
    return undefined
  }
}

export function releasesOf(root: string): string[] {
  try {
    return readdirSync(join(root, 'releases')).sort()
  } catch {
    return []
  }
}

export function historyOf(root: string): Record<string, unknown>[] {
  const file = join(root, '.safe-deploy', 'history.jsonl')
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map(l => JSON.parse(l) as Record<string, unknown>)
}

export function lockExists(root: string): boolean {
  return existsSync(join(root, '.safe-deploy', 'lock'))
}

export function lastLog(logDir: string): string {
  const files = readdirSync(logDir)
    .filter(f => f.endsWith('.log'))
    .sort()
  const last = files[files.length - 1]
  if (!last) throw new Error(`no log in ${logDir}`)
  return readFileSync(join(logDir, last), 'utf8')
}

/**
 * Every entry below `dir`: type, mode, and bytes or link target (with `mtime`, a file's mtime in whole
 * seconds too); the build's and shared links included. A link target's `roots` prefix reads `<root>` (shared
 * links point into each project's own root).
 */
export function snapshot(dir: string, roots: string[] = [], opts: { mtime?: boolean } = {}): string[] {
  const out: string[] = []
  const walk = (rel: string) => {
    const abs = rel ? join(dir, rel) : dir
    const st = lstatSync(abs)
    const mode = (st.mode & 0o7777).toString(8)
    if (st.isSymbolicLink()) {
      out.push(`${rel} -> ${roots.reduce((t, r) => t.replace(r, '<root>'), readlinkSync(abs))}`)
    } else if (st.isDirectory()) {
      out.push(`${rel}/ ${mode}`)
      for (const n of readdirSync(abs).sort()) walk(rel ? `${rel}/${n}` : n)
    } else {
      const mtime = opts.mtime ? ` @${Math.floor(st.mtimeMs / 1000)}` : ''
      out.push(`${rel} ${mode} ${createHash('sha256').update(readFileSync(abs)).digest('hex')}${mtime}`)
    }
  }
  walk('')
  return out
}

/** Writes `src/rel` (making its parent dirs) and gives it `mode`. */
export function writeWithMode(src: string, rel: string, body: string | Buffer, mode = 0o644) {
  mkdirSync(join(src, rel, '..'), { recursive: true })
  writeFileSync(join(src, rel), body)
  chmodSync(join(src, rel), mode)
}

/**
 * A source tree meant to break packers: modes 0600/0640/0755, a 0700 dir, names with spaces, quotes, a
 * newline, unicode, leading dashes, an empty file and dir, dangling, absolute, relative and dir symlinks,
 * node_modules and .git (excluded by the default config), a shared `.env`, and the 40 `blobs` as assets.
 */
export function hostileTree(src: string, blobs: Buffer[]) {
  const w = (rel: string, body: string | Buffer, mode = 0o644) => writeWithMode(src, rel, body, mode)
  w('exec.sh', '#!/bin/sh\necho hi\n', 0o755)
  w('secret.key', 'key\n', 0o600)
  w('group.conf', 'group\n', 0o640)
  w('with space/a file.txt', 'spaces\n')
  w(`quotes/it's "q".txt`, 'quotes\n')
  w('odd/new\nline', 'newline in the name\n')
  w('odd/ünïcødé-名前.txt', 'unicode\n')
  w('-rf', 'leading dash\n')
  w('odd/--help', 'two dashes\n')
  w('empty-file', '')
  w('node_modules/excluded.js', 'not uploaded\n')
  w('sub/node_modules/excluded.js', 'not uploaded either\n')
  w('.git/HEAD', 'ref: refs/heads/main\n')
  w('swap/file-then-dir', 'a file first\n')
  mkdirSync(join(src, 'swap', 'dir-then-file'), { recursive: true })
  w('swap/dir-then-file/inner', 'inside\n')
  w('.env', 'SHIPPED=placeholder, replaced by the shared link\n')
  blobs.forEach((b, i) => w(`assets/blob-${i}.bin`, b))
  mkdirSync(join(src, 'empty-dir'), { recursive: true })
  mkdirSync(join(src, 'private-dir'), { recursive: true })
  chmodSync(join(src, 'private-dir'), 0o700)
  symlinkSync('nowhere/at/all', join(src, 'dangling'))
  symlinkSync('/etc/hostname', join(src, 'absolute'))
  symlinkSync('with space/a file.txt', join(src, 'relative link'))
  symlinkSync('assets', join(src, 'assets-link'))
}

export async function answer(port: number, path = '/'): Promise<string> {
  return (await httpGet(`http://127.0.0.1:${port}${path}`)).body.trim()
}

export { stopApp }

/** A tiny migration tool like alembic: numbered up/down SQL files and a schema_version table. */
export const MIGRATE = `#!/bin/sh
set -eu
q() { psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }
q -c 'CREATE TABLE IF NOT EXISTS schema_version (v int NOT NULL)' >/dev/null
cur=$(q -A -t -c 'SELECT coalesce(max(v), 0) FROM schema_version')
num() { expr "$(basename "$1" "$2")" + 0; }
case "$1" in
  current) echo "$cur (head)" ;;
  up)
    for f in migrations/*.up.sql; do
      [ -e "$f" ] || continue
      n=$(num "$f" .up.sql)
      if [ "$n" -gt "$cur" ]; then
        echo "applying $f"
        q -f "$f"
        q -c "INSERT INTO schema_version VALUES ($n)"
      fi
    done ;;
  down)
    for f in $(ls -r migrations/*.down.sql 2>/dev/null); do
      n=$(num "$f" .down.sql)
      if [ "$n" -gt "\${2:-0}" ] && [ "$n" -le "$cur" ]; then
        echo "reverting $f"
        q -f "$f"
        q -c "DELETE FROM schema_version WHERE v = $n"
      fi
    done ;;
  rollback)
    # like \`php artisan migrate:rollback\` or \`alembic downgrade -1\`: undoes the LAST migration, whichever it is
    f="migrations/$(printf '%03d' "$cur").down.sql"
    if [ "$cur" -gt 0 ] && [ -e "$f" ]; then
      echo "reverting $f"
      q -f "$f"
      q -c "DELETE FROM schema_version WHERE v = $cur"
    fi ;;
esac
`

export interface Migration {
  n: string
  up: string
  down?: string
}

export function withMigrations(p: Project, migrations: Migration[]) {
  const src = join(p.dir, 'app')
  mkdirSync(join(src, 'migrations'), { recursive: true })
  for (const m of migrations) {
    writeFileSync(join(src, 'migrations', `${m.n}.up.sql`), m.up)
    if (m.down) writeFileSync(join(src, 'migrations', `${m.n}.down.sql`), m.down)
  }
  writeFileSync(join(src, 'bin', 'migrate'), MIGRATE)
  chmodSync(join(src, 'bin', 'migrate'), 0o755)
}

/**
 * A project whose app talks to PostgreSQL at `url` (DATABASE_URL, from the runner's env) and migrates with
 * `migrate` ({command, revision, down}); backups of that database are on unless `extra` says otherwise.
 */
export function migrationProject(opts: {
  host: SshHost
  root: string
  url: string
  migrate: Record<string, unknown>
  extra?: Record<string, unknown>
}): Promise<Project> {
  return project({
    hosts: [opts.host],
    root: opts.root,
    config: c => ({
      ...c,
      env: { ...(c.env as object), DATABASE_URL: 'env:DATABASE_URL' },
      stages: { ...(c.stages as object), migrate: opts.migrate },
      backup: { databases: [{ engine: 'postgres', url: 'env:DATABASE_URL' }] },
      verify: {
        http: { url: (c.verify as { http: { url: string } }).http.url, retries: 6, interval: '300ms' }
      },
      ...opts.extra
    }),
    envExtra: { DATABASE_URL: opts.url }
  })
}

/** The app's restart on every host: its port and pid file from the host's own shared dir. */
export const RESTART =
  'PORT=$(cat "$SAFE_DEPLOY_SHARED/port") PID_FILE="$SAFE_DEPLOY_SHARED/app.pid" APP_LOG="$SAFE_DEPLOY_SHARED/logs/app.log" bin/restart'

/**
 * The check on every host: the app on the host's port answers `ok <this release's version>`; a host whose
 * shared/broken names this version fails it (the new release is broken there, the old one is not).
 */
export const CHECK = [
  'test "$(cat "$SAFE_DEPLOY_SHARED/broken" 2>/dev/null)" != "$(cat VERSION)" || { echo "broken here" >&2; exit 1; };',
  'ok=1; i=0; while [ $i -lt 50 ]; do',
  'if curl -fsS --max-time 2 "http://127.0.0.1:$(cat "$SAFE_DEPLOY_SHARED/port")/health" | grep -q "ok $(cat VERSION)"; then ok=0; break; fi;',
  'sleep 0.1; i=$((i + 1)); done; [ $ok = 0 ]'
].join(' ')

export interface Fleet {
  p: Project
  roots: string[]
  ports: number[]
  names: string[]
  /** Each host's app pid file (stop them with stopApp). */
  pidFiles: string[]
}

/**
 * Fleets (fleet.test.ts, hooks.test.ts): a project over hosts h1..hn (h1 primary), each with its own root
 * and port.
 */
export async function fleetProject(
  name: string,
  hosts: SshHost[],
  opts: { roles?: string[][]; config?: (c: Config) => Config } = {}
): Promise<Fleet> {
  const roots = hosts.map(h => h.root(name))
  const ports: number[] = []
  const pidFiles: string[] = []
  for (const _ of hosts) ports.push(await freePort())
  const names = hosts.map((_, i) => `h${i + 1}`)
  const p = await project({
    hosts,
    root: roots[0] as string,
    config: base => {
      const c: Config = {
        ...base,
        hosts: hosts.map((h, i) => ({
          name: names[i],
          address: h.address,
          port: h.port,
          user: 'root',
          path: roots[i],
          ...(i === 0 ? { primary: true } : {}),
          ...(opts.roles ? { roles: opts.roles[i] } : {})
        })),
        env: {},
        ssh: { ...(base.ssh as Config), connect_retries: 1, connect_timeout: '3s', keepalive_interval: '1s' },
        stages: { build: 'echo built > BUILD_OK', restart: RESTART },
        verify: { command: CHECK }
      }
      return opts.config ? opts.config(c) : c
    }
  })
  // one deploy key for the fleet: the first host's client key is authorized on every host
  for (const h of hosts.slice(1)) authorizeKeyOf(h, hosts[0] as SshHost)
  hosts.forEach((h, i) => {
    const shared = `${roots[i]}/shared`
    h.run(
      `mkdir -p ${q(`${shared}/logs`)} ${q(`${shared}/data`)} && printf 'SECRET=from-shared\\n' > ${q(`${shared}/.env`)} && printf '%s' ${ports[i]} > ${q(`${shared}/port`)}`
    )
    pidFiles.push(`${shared}/app.pid`)
  })
  return { p, roots, ports, names, pidFiles }
}
