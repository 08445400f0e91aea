/**
 * Real OpenSSH servers on loopback for the e2e tests: one sshd per simulated host, each on its own
 * 127.0.x.y address, with its own host key and a client key authorized for root.
 *
 * Addresses: `127.0.<10 + JEST_WORKER_ID>.<n>` with n counting up from 2 in each process (each test file,
 * since jest gives every test file its own module registry), so parallel jest workers never collide; an
 * address whose port is already taken (e.g. a leftover sshd of a killed run) is skipped.
 */
import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const SSHD = '/usr/sbin/sshd'
const SSH = '/usr/bin/ssh'
const SSH_KEYGEN = '/usr/bin/ssh-keygen'
const DEFAULT_PORT = 2222
const START_TIMEOUT_MS = 10_000
const STOP_TIMEOUT_MS = 10_000

export interface SshHost {
  /** Loopback address sshd listens on, e.g. 127.0.11.2. */
  address: string
  port: number
  user: 'root'
  /** Client ed25519 private key (OpenSSH PEM format), authorized for root on this host. */
  privateKey: string
  privateKeyFile: string
  /** `[address]:port ssh-ed25519 AAAA...` */
  knownHostsLine: string
  /** A known_hosts file that contains only knownHostsLine. */
  knownHostsFile: string
  /** `SHA256:...` fingerprint of the host key, as ssh-keygen -l prints it. */
  hostKeyFingerprint: string
  /** Temp dir for this host (keys, config, log, deploy roots); it is kept after stop() for debugging. */
  dir: string
  /** A fresh deploy root path `<dir>/srv/<name>`; not created. */
  root(name: string): string
  /** Runs a local shell command synchronously (the host is this machine) and returns its stdout. */
  run(cmd: string): string
  /** sshd's log (LogLevel VERBOSE). */
  logFile: string
  /** pid of the listening sshd. */
  pid: number
  /** The network namespace sshd runs in (StartSshdOptions.netns). */
  netns?: string
  /**
   * Stops the listening sshd; resolves when the port is closed. Idempotent. Open sessions keep running until
   * their clients disconnect, unless killSessions is set (simulates the host going down; clients then see
   * ECONNRESET, which crashes a node-ssh/ssh2 client that has no 'error' listener).
   */
  stop(opts?: { killSessions?: boolean }): Promise<void>
  /** Ends every open session (SIGTERM to the listener's children) and keeps listening: a dropped connection. */
  dropSessions(): void
}

export interface StartSshdOptions {
  /** Listen address; default: the next free 127.0.<10 + JEST_WORKER_ID>.<n>. */
  address?: string
  /** Default 2222. */
  port?: number
  /**
   * Lines appended to sshd_config. `fastShell()` skips root's ~/.bashrc in sessions (about 0.4 s per command
   * on these machines), for tests that run many commands.
   */
  extraConfig?: string[]
  /**
   * Run sshd inside this network namespace (`ip netns exec`, see harness/netns.ts); `address` is then
   * required and must be one of the namespace's. The port checks run inside the namespace too.
   */
  netns?: string
}

/**
 * sshd_config lines that stop bash from sourcing ~/.bashrc in each session: bash reads it for a command from
 * sshd only when it is a top-level shell, and SHLVL=1 from sshd makes it level 2.
 */
export function fastShell(): string[] {
  return ['SetEnv SHLVL=1']
}

/** One client key for a fleet, as in production: `from`'s client key is authorized on `host` too (once). */
export function authorizeKeyOf(host: SshHost, from: SshHost): void {
  const key = readFileSync(`${from.privateKeyFile}.pub`, 'utf8')
  const file = path.join(host.dir, 'etc', 'authorized_keys')
  if (!readFileSync(file, 'utf8').includes(key)) appendFileSync(file, key)
}

/** Creates a fresh directory under os.tmpdir() (mkdtemp; mode 0700). */
export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix))
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('freePort: no port assigned'))))
    })
  })
}

/**
 * Whether something accepts TCP connections on address:port right now; with `netns`, seen from inside that
 * network namespace (bash's /dev/tcp under `ip netns exec`).
 */
export function isPortOpen(
  address: string,
  port: number,
  timeoutMs = 1000,
  netns?: string
): Promise<boolean> {
  if (netns) {
    const res = spawnSync(
      'ip',
      ['netns', 'exec', netns, 'bash', '-c', 'exec 3<>"/dev/tcp/$0/$1"', address, String(port)],
      { stdio: 'ignore', timeout: timeoutMs }
    )
    return Promise.resolve(res.status === 0)
  }
  return new Promise(resolve => {
    const socket = net.connect({ host: address, port })
    const done = (open: boolean): void => {
      socket.removeAllListeners()
      socket.on('error', () => undefined)
      socket.destroy()
      resolve(open)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/**
 * The first bytes a server on address:port sends (an sshd: `SSH-2.0-OpenSSH_...`), or '' when none come within
 * timeoutMs. Stronger than isPortOpen where something on the network path accepts every TCP connection (a
 * container's userspace network does: then only the banner tells a real sshd). `netns`: seen from there.
 */
export function bannerOf(address: string, port: number, timeoutMs = 2000, netns?: string): Promise<string> {
  if (netns) {
    const res = spawnSync(
      'ip',
      [
        'netns',
        'exec',
        netns,
        'bash',
        '-c',
        'exec 3<>"/dev/tcp/$0/$1" && head -c 8 <&3',
        address,
        String(port)
      ],
      { encoding: 'utf8', timeout: timeoutMs }
    )
    return Promise.resolve(res.stdout ?? '')
  }
  return new Promise(resolve => {
    const socket = net.connect({ host: address, port })
    let got = ''
    const done = (): void => {
      socket.removeAllListeners()
      socket.on('error', () => undefined)
      socket.destroy()
      resolve(got)
    }
    socket.setTimeout(timeoutMs, done)
    socket.on('data', (c: Buffer) => ((got += c.toString('latin1')), done()))
    socket.once('error', done)
    socket.once('close', done)
  })
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

function tailOf(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** Whether pid is a live process (a zombie counts as dead). */
export function isProcessAlive(pid: number): boolean {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return false
  }
  // "pid (comm) S ..." where comm may contain spaces and parentheses.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  return state !== 'Z' && state !== 'X' && state !== ''
}

function childPids(pid: number): number[] {
  const children: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) children.push(Number(entry))
    } catch {
      // the process went away meanwhile
    }
  }
  return children
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // already gone
  }
}

// --- address allocation -------------------------------------------------------------------------------

const workerId = Number(process.env.JEST_WORKER_ID ?? '0') || 0
let nextHostByte = 2

function nextAddress(): string {
  const third = 10 + workerId
  if (third > 255) throw new Error(`startSshd: JEST_WORKER_ID ${workerId} is too large for 127.0.<10+id>.x`)
  if (nextHostByte > 254) throw new Error(`startSshd: no loopback addresses left in 127.0.${third}.0/24`)
  return `127.0.${third}.${nextHostByte++}`
}

// --- registry of started servers; a watchdog stops each one when this process dies ----------------------

const running = new Set<SshHost>()
const watchdogs = new Map<SshHost, number>()

/*
 * sshd daemonizes, so it would outlive a test process that dies without stopAll() (crash, SIGKILL, Ctrl-C,
 * or simply a test file without afterAll(stopAll)). An in-process 'exit' hook does not help under jest:
 * test files get a copy of `process` whose listeners never fire. So each sshd gets a detached watchdog
 * that stops it (SIGTERM) within a second after this process is gone. sshd removes its pid file when it
 * exits, which guards against signalling a recycled pid; stop() ends the watchdog first.
 */
const WATCHDOG = `
while kill -0 "$1" 2>/dev/null; do
  [ -f "$3" ] || exit 0
  sleep 1
done
[ -f "$3" ] && kill -TERM "$2" 2>/dev/null
exit 0`

function startWatchdog(sshdPid: number, pidFile: string): number {
  const child = spawn(
    '/bin/sh',
    ['-c', WATCHDOG, 'sshd-watchdog', String(process.pid), String(sshdPid), pidFile],
    {
      detached: true,
      stdio: 'ignore'
    }
  )
  child.unref()
  return child.pid ?? 0
}

/** Stops every sshd this process (test file) started. Use as `afterAll(stopAll)`. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map(host => host.stop()))
}

// --- sshd ----------------------------------------------------------------------------------------------

function keygen(file: string, comment: string): void {
  rmSync(file, { force: true })
  rmSync(`${file}.pub`, { force: true })
  execFileSync(SSH_KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
}

function sshdConfig(p: {
  address: string
  port: number
  hostKey: string
  authorizedKeys: string
  pidFile: string
  extraConfig?: string[]
}): string {
  return [
    `ListenAddress ${p.address}`,
    `Port ${p.port}`,
    `HostKey ${p.hostKey}`,
    `AuthorizedKeysFile ${p.authorizedKeys}`,
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    'PermitRootLogin yes',
    `PidFile ${p.pidFile}`,
    'MaxStartups 100',
    'MaxSessions 50',
    'LogLevel VERBOSE',
    'PrintMotd no',
    'PrintLastLog no',
    'X11Forwarding no',
    'UseDNS no',
    // No AcceptEnv: the client's environment is not passed through.
    // SFTP without depending on the sftp-server binary's path (ssh clients may upload files with it).
    'Subsystem sftp internal-sftp',
    ...(p.extraConfig ?? []),
    ''
  ].join('\n')
}

type Attempt = { ok: true; pid: number } | { ok: false; bindFailed: boolean; reason: string }

async function launch(
  config: string,
  logFile: string,
  pidFile: string,
  address: string,
  port: number,
  netns?: string
) {
  rmSync(pidFile, { force: true })
  const before = existsSync(logFile) ? readFileSync(logFile, 'utf8').length : 0
  const newLog = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(before) : '')

  // sshd parses its config, forks into the background and exits.
  const argv = [SSHD, '-f', config, '-E', logFile]
  const res = spawnSync(netns ? 'ip' : SSHD, netns ? ['netns', 'exec', netns, ...argv] : argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: START_TIMEOUT_MS
  })
  if (res.error || res.status !== 0) {
    return {
      ok: false,
      bindFailed: false,
      reason: `${SSHD} exited with ${res.error?.message ?? res.status ?? res.signal}: ${res.stderr}${newLog()}`
    } satisfies Attempt
  }

  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    const log = newLog()
    if (/Cannot bind any address|Bind to port .* failed/.test(log)) {
      return { ok: false, bindFailed: true, reason: log } satisfies Attempt
    }
    if (/fatal:/.test(log)) return { ok: false, bindFailed: false, reason: log } satisfies Attempt
    // The pid file is written after sshd bound its listen socket, so an open port alone could be someone else.
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0
    if (pid > 0 && isProcessAlive(pid) && (await isPortOpen(address, port, 1000, netns))) {
      return { ok: true, pid } satisfies Attempt
    }
    await sleep(50)
  }
  const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0
  if (pid > 0) signal(pid, 'SIGKILL')
  return {
    ok: false,
    bindFailed: false,
    reason: `sshd did not accept connections on ${address}:${port} within ${START_TIMEOUT_MS} ms`
  } satisfies Attempt
}

/**
 * Starts a real OpenSSH sshd on a loopback address that accepts root logins with a fresh client key.
 * Throws (with the sshd log tail) when sshd does not come up within 10 s. Needs root.
 */
export async function startSshd(opts: StartSshdOptions = {}): Promise<SshHost> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error('startSshd: the e2e tests must run as root (sshd has to accept root logins)')
  }
  for (const bin of [SSHD, SSH, SSH_KEYGEN]) {
    if (!existsSync(bin)) {
      throw new Error(`startSshd: ${bin} is missing; the jest globalSetup should have installed it`)
    }
  }
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 })
  if (opts.netns && !opts.address) throw new Error('startSshd: netns needs an address of that namespace')

  const port = opts.port ?? DEFAULT_PORT
  const dir = tempDir('safe-deploy-e2e-host-')
  const etc = path.join(dir, 'etc')
  mkdirSync(etc, { recursive: true })
  const hostKey = path.join(etc, 'ssh_host_ed25519_key')
  const privateKeyFile = path.join(dir, 'id_ed25519')
  const authorizedKeys = path.join(etc, 'authorized_keys')
  const config = path.join(etc, 'sshd_config')
  const pidFile = path.join(dir, 'sshd.pid')
  const logFile = path.join(dir, 'sshd.log')
  const knownHostsFile = path.join(dir, 'known_hosts')

  keygen(hostKey, `e2e-host-key`)
  keygen(privateKeyFile, `e2e-client-key`)
  writeFileSync(authorizedKeys, readFileSync(`${privateKeyFile}.pub`, 'utf8'), { mode: 0o600 })

  // Pick an address (skipping ones already in use) and start sshd on it.
  let address = ''
  let pid = 0
  const failures: string[] = []
  for (let attempt = 0; attempt < 20 && pid === 0; attempt++) {
    address = opts.address ?? nextAddress()
    if (!opts.address && (await isPortOpen(address, port, 500))) {
      failures.push(`${address}:${port} is already in use`)
      continue
    }
    writeFileSync(
      config,
      sshdConfig({ address, port, hostKey, authorizedKeys, pidFile, extraConfig: opts.extraConfig })
    )
    const result = await launch(config, logFile, pidFile, address, port, opts.netns)
    if (result.ok) {
      pid = result.pid
    } else {
      failures.push(`${address}:${port}: ${result.reason.trim().split('\n').slice(-3).join(' | ')}`)
      if (opts.address || !result.bindFailed) {
        throw new Error(
          `startSshd: sshd failed to start on ${address}:${port}: ${result.reason.trim()}\n` +
            `sshd log ${logFile}, last lines:\n${tailOf(logFile)}`
        )
      }
    }
  }
  if (pid === 0) {
    throw new Error(`startSshd: could not start sshd on any address:\n${failures.join('\n')}`)
  }

  const hostPub = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/)
  const hostWho = port === 22 ? address : `[${address}]:${port}`
  const knownHostsLine = `${hostWho} ${hostPub[0]} ${hostPub[1]}`
  writeFileSync(knownHostsFile, `${knownHostsLine}\n`)
  const fingerprint = execFileSync(SSH_KEYGEN, ['-l', '-E', 'sha256', '-f', `${hostKey}.pub`], {
    encoding: 'utf8'
  })
  const hostKeyFingerprint = fingerprint.split(/\s+/)[1] ?? ''

  let stopping: Promise<void> | undefined
  const host: SshHost = {
    address,
    port,
    user: 'root',
    privateKey: readFileSync(privateKeyFile, 'utf8'),
    privateKeyFile,
    knownHostsLine,
    knownHostsFile,
    hostKeyFingerprint,
    dir,
    logFile,
    pid,
    netns: opts.netns,
    root: name => path.join(dir, 'srv', name),
    run: cmd => runLocal(cmd, dir),
    dropSessions: () => {
      for (const child of childPids(pid)) signal(child, 'SIGTERM')
    },
    stop: (stopOpts = {}) => {
      stopping ??= stopSshd(host, stopOpts.killSessions ?? false).finally(() => running.delete(host))
      return stopping
    }
  }
  const watchdog = startWatchdog(pid, pidFile)
  watchdogs.set(host, watchdog)
  running.add(host)
  return host
}

async function stopSshd(host: SshHost, killSessions: boolean): Promise<void> {
  // Open sessions are separate sshd processes (children of the listener).
  const watchdog = watchdogs.get(host)
  if (watchdog) signal(watchdog, 'SIGKILL')
  watchdogs.delete(host)
  const children = killSessions ? childPids(host.pid) : []
  signal(host.pid, 'SIGTERM')
  for (const child of children) signal(child, 'SIGTERM')
  const deadline = Date.now() + STOP_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (!isProcessAlive(host.pid) && !(await isPortOpen(host.address, host.port, 500, host.netns))) return
    await sleep(50)
  }
  signal(host.pid, 'SIGKILL')
  for (const child of children) signal(child, 'SIGKILL')
  await sleep(100)
  if (await isPortOpen(host.address, host.port, 500, host.netns)) {
    throw new Error(`sshd on ${host.address}:${host.port} (pid ${host.pid}) did not stop`)
  }
}

function runLocal(cmd: string, cwd: string): string {
  const res = spawnSync('/bin/sh', ['-c', cmd], { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  if (res.error || res.status !== 0) {
    throw new Error(
      `command failed (${res.error?.message ?? `exit ${res.status ?? res.signal}`}): ${cmd}\n${res.stderr}`
    )
  }
  return res.stdout
}

// --- ssh client helpers --------------------------------------------------------------------------------

/**
 * Arguments for the OpenSSH client that log in to host as root with its client key and strict host key
 * checking against knownHostsFile (default: the host's own known_hosts file). Ignores ~/.ssh/config.
 */
export function sshArgs(host: SshHost, knownHostsFile = host.knownHostsFile): string[] {
  return [
    '-F',
    '/dev/null',
    '-i',
    host.privateKeyFile,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'IdentityAgent=none',
    '-o',
    'BatchMode=yes',
    '-o',
    `UserKnownHostsFile=${knownHostsFile}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'ConnectTimeout=10',
    '-p',
    String(host.port),
    `${host.user}@${host.address}`
  ]
}

/** Runs `command` on host with the real ssh client (synchronously); never throws on a non-zero exit. */
export function ssh(
  host: SshHost,
  command: string,
  opts: { knownHostsFile?: string; timeoutMs?: number; input?: string } = {}
): SpawnSyncReturns<string> {
  return spawnSync(SSH, [...sshArgs(host, opts.knownHostsFile), command], {
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 30_000,
    input: opts.input ?? '',
    maxBuffer: 64 * 1024 * 1024
  })
}
