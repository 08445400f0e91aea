import { hostname, userInfo } from 'node:os'
import type { Readable } from 'node:stream'
import { sshSources, type LoadedConfig, type ResolvedHost } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { Layout } from '../commands/layout.js'
import { END_OF_SCRIPT, REMOTE_SHELL, withEnv, type RemoteCommand } from '../commands/command.js'
import type { ExecResult, Transport } from '../transport/types.js'
import { LocalTransport } from '../transport/local.js'
import { SshTransport, isUnreachable } from '../transport/ssh.js'
import type { DeployLog } from '../report/log.js'
import type { LockOwnerFields } from '../commands/lock.js'
import { StageError, errorMessage } from '../core/errors.js'
import { lastLines } from '../core/excerpt.js'

/** One connected host and what preflight learned about it. */
export interface HostSession {
  host: ResolvedHost
  t: Transport
  /** Paths under this host's deploy root. */
  layout: Layout
  /** The release `current` pointed to when we connected (undefined: none). */
  current?: string
  releases: string[]
  /** Releases marked complete (built to the end), from .safe-deploy/complete/. */
  complete?: string[]
  /**
   * This host's history (its lines, as readHistory prints them) when preflight read it under the lock in the
   * same script as the lock (a rollback's lock host); unset: not read yet.
   */
  history?: string
  /**
   * Releases the cleanup stage chose to prune here: the run's finish script moves them away under the lock,
   * before the lock is released, and their removal goes on after it (pruneReleases). Unset: none.
   */
  prune?: string[]
  /**
   * The incremental upload's check of its base release, as preflight's inspection printed it under the lock
   * (probeBase's KEY=value lines among the inspection's); unset: the upload checks it itself.
   */
  baseProbe?: string
  /** What the switch stage last did here, for the report when a rollback fails (unset: nothing). */
  switched?: string
}

/** Who is running this, for the lock owner and history. */
export interface Actor {
  who: string
  run?: string
  commit?: string
}

/**
 * What a run that saves its progress offers the stages: a checkpoint after a per-host state change. The stage
 * layer adds `watch` (for the switch strategy) to this interface where it implements it, ProgressTracker in
 * src/pipeline/progress.ts, so that this layer needs no import from the layer above it.
 */
export interface RunProgressHooks {
  checkpoint(): void
}

export interface RunContext {
  loaded: LoadedConfig
  config: Config
  log: DeployLog
  signal: AbortSignal
  actor: Actor
  sessions: HostSession[]
  /**
   * The config's primary when the selection left it out (`loaded.lockHost`): connected for the global lock
   * alone; not in `sessions` (nothing is staged, switched or recorded there). See `lockSessionOf`.
   */
  lockSession?: HostSession
  /**
   * Hosts that could not be reached at connect and were left out of `sessions`: with --skip-unreachable
   * (a deploy goes on without them, loudly), or for a read-only command that shows them as unreachable.
   */
  unreachable?: UnreachableHost[]
  verbose: boolean
  /** When the run started (verify.logs `{started}`). */
  startedAt: Date
  /** Set when we hold the lock on the primary. */
  lock?: LockOwnerFields
  /** `--wait-lock`: how long to wait for a lock another run holds before giving up (default: not at all). */
  waitLockMs?: number
  /** Told when the lock is taken, so an Action post step can release it after a cancel. */
  onLock?: (token: string | undefined) => void
  /** Saves the run's progress as it goes (the Action), for its post step to finish a killed run. */
  progress?: RunProgressHooks
  /**
   * Set by `plan` (src/flows/plan.ts): the run is a dry run. Hosts are reached through `connect` (a
   * recording transport), and what the stages would do on the runner (the test command, packing, HTTP checks
   * from the runner, waits) is told to `runner` instead of being done.
   */
  dryRun?: DryRun
}

/** A host `connectAll` could not reach, with why. */
export interface UnreachableHost {
  host: ResolvedHost
  error: string
}

/** A dry run's seams: how hosts are reached and where runner-side effects are shown. */
export interface DryRun {
  connect(host: ResolvedHost): Transport
  /** A step on the runner that a real run would take (for `host`, when given): shown, not done. */
  runner(label: string, command?: string, host?: string): void
}

/** Who runs this when nobody says: the local user at this machine. The CI platforms say more (platform/actor.ts). */
export function localActor(): Actor {
  return { who: `${safeUser()}@${hostname()}` }
}

function safeUser(): string {
  try {
    return userInfo().username
  } catch {
    return 'unknown'
  }
}

export function primaryOf(ctx: RunContext): HostSession {
  const p = ctx.sessions.find(s => s.host.primary) ?? ctx.sessions[0]
  if (!p) throw new StageError('preflight', 'no host is connected')
  return p
}

/** Where the global deploy lock lives: the config's primary, also when the selection left it out. */
export function lockSessionOf(ctx: RunContext): HostSession {
  return ctx.lockSession ?? primaryOf(ctx)
}

/** How `connectAll` treats a host it cannot reach. */
export interface ConnectOptions {
  /**
   * A read-only command (status, releases, lock): every host that cannot be reached goes to `ctx.unreachable`
   * and the command shows it; nothing throws (the lock host aside, when the lock is all the command reads).
   */
  tolerate?: boolean
}

/**
 * Connects to every host in parallel (and to the lock host, when the selection left the primary out). A host
 * that cannot be reached stops the run (every other connection closed), unless `loaded.skipUnreachable` (a
 * host other than the primary and the lock host that cannot be reached, not one with a wrong host key or
 * refused credentials, is then left out, loudly: `ctx.unreachable`) or `tolerate`.
 */
export async function connectAll(ctx: RunContext, opts: ConnectOptions = {}): Promise<void> {
  const { loaded } = ctx
  if (loaded.auth.insecure && loaded.hosts.some(h => h.kind === 'ssh')) {
    ctx.log.warn(
      'WARNING: ssh.insecure_skip_host_key_check is true: host keys are NOT verified and anyone on the network path can impersonate your servers. Add known_hosts instead.'
    )
  }
  const sources = ctx.dryRun ? undefined : sshSources(loaded)
  if (sources) ctx.log.info(sources)
  const all = loaded.lockHost ? [...loaded.hosts, loaded.lockHost] : loaded.hosts
  const results = await Promise.allSettled(all.map(host => connectHost(ctx, host)))
  const sessions: HostSession[] = []
  const unreachable: UnreachableHost[] = []
  let fatal: { host: ResolvedHost; reason: unknown } | undefined
  results.forEach((r, i) => {
    const host = all[i] as ResolvedHost
    if (r.status === 'fulfilled') sessions.push(r.value)
    else if (
      opts.tolerate ||
      // a wrong host key or refused credentials is not "unreachable": it stops the run
      (loaded.skipUnreachable && !host.primary && host !== loaded.lockHost && isUnreachable(r.reason))
    )
      unreachable.push({ host, error: errorMessage(r.reason) })
    else fatal ??= { host, reason: r.reason }
  })
  // a run stopped by the signal is not "a host could not be reached"
  if (!fatal && !opts.tolerate && unreachable.length && ctx.signal.aborted)
    fatal = { host: (unreachable[0] as UnreachableHost).host, reason: ctx.signal.reason }
  if (fatal) {
    await Promise.all(sessions.map(s => s.t.close()))
    const why = fatal.host === loaded.lockHost ? ' (the primary, which holds the deploy lock)' : ''
    const skip =
      loaded.skipUnreachable && (fatal.host.primary || fatal.host === loaded.lockHost)
        ? '; --skip-unreachable never skips the primary'
        : ''
    throw new StageError('preflight', `${errorMessage(fatal.reason)}${why}${skip}`, fatal.host.name)
  }
  ctx.lockSession = loaded.lockHost ? sessions.find(s => s.host === loaded.lockHost) : undefined
  ctx.sessions = sessions.filter(s => s.host !== loaded.lockHost)
  ctx.unreachable = unreachable
  for (const s of sessions)
    ctx.log.info(
      `connected (${s.host.kind === 'local' ? 'local' : `${s.host.user}@${s.host.address}:${s.host.port}`})${s === ctx.lockSession ? ' for the deploy lock only (the primary is not selected)' : ''}`,
      s.host.name
    )
  if (!opts.tolerate)
    for (const u of unreachable)
      ctx.log.warn(
        `WARNING: SKIPPED (--skip-unreachable): ${u.host.name} cannot be reached (${u.error}); this run deploys to the other hosts only`,
        u.host.name
      )
}

function connectHost(ctx: RunContext, host: ResolvedHost): Promise<HostSession> {
  const { loaded } = ctx
  const ssh = loaded.config.ssh
  const session = (t: Transport): HostSession => ({ host, t, layout: new Layout(host.path), releases: [] })
  if (ctx.dryRun) return Promise.resolve(session(ctx.dryRun.connect(host)))
  if (host.kind === 'local') return Promise.resolve(session(new LocalTransport(host.name)))
  return SshTransport.connect({
    label: host.name,
    address: host.address,
    port: host.port,
    user: host.user,
    privateKey: host.privateKey ?? loaded.auth.privateKey,
    keySource: host.keySource ?? loaded.auth.keySource,
    passphrase: loaded.auth.passphrase,
    agent: loaded.auth.agent,
    agentLabel: loaded.auth.agentLabel,
    hostKeyAlias: host.hostKeyAlias,
    knownHosts: loaded.auth.knownHosts,
    fingerprints: loaded.auth.fingerprints,
    insecureSkipHostKeyCheck: loaded.auth.insecure,
    jump: host.jump ?? loaded.auth.jump,
    connectTimeoutMs: ssh.connect_timeout,
    connectRetries: ssh.connect_retries,
    keepaliveIntervalMs: ssh.keepalive_interval,
    signal: ctx.signal,
    onReconnect: () => ctx.log.warn('the SSH connection was lost; reconnecting', host.name),
    onRetry: (attempt, delay, e) =>
      ctx.log.warn(
        `connect attempt ${attempt} failed (${e.message}); retrying in ${delay / 1000} s`,
        host.name
      )
  }).then(session)
}

export async function closeAll(ctx: RunContext): Promise<void> {
  const all = ctx.lockSession ? [...ctx.sessions, ctx.lockSession] : ctx.sessions
  await Promise.allSettled(all.map(s => s.t.close()))
}

export interface RunOptions {
  /** Stage name for errors. */
  stage: string
  /** Return the result instead of throwing on a non-zero exit. */
  allowFail?: boolean
  stdin?: string | Readable
  timeoutMs?: number
  /** A user command's output goes here instead of to the log (`safe-deploy logs`). */
  onOutput?: (chunk: string) => void
  /**
   * A line the script prints on stdout at a point of its own (switchThen's SWITCHED_MARKER): `seen` is called
   * when it arrives, in order with the output around it, and the line is kept out of the log.
   */
  marker?: { line: string; seen: () => void }
  /** runRaw: the labels of what the command line does, in order (one round trip; `plan` shows each). */
  parts?: string[]
}

/** Runs a command on a host: the script travels over stdin; user command output streams to the log. */
export async function runOn(
  ctx: RunContext,
  s: HostSession,
  cmd: RemoteCommand,
  opts: RunOptions
): Promise<ExecResult> {
  const name = s.host.name
  if ((cmd.user && !opts.onOutput) || ctx.verbose)
    ctx.log.info(
      `$ ${cmd.user ? (cmd.display ?? cmd.script.split('\n').slice(1).join('; ')) : cmd.label}`,
      name
    )
  const out = ctx.log.lineWriter(name)
  const err = ctx.log.lineWriter(name, cmd.user || cmd.stream ? 'info' : 'warn')
  const toOut = cmd.user ? (opts.onOutput ?? out.push) : undefined
  const stdout = opts.marker ? watchFor(opts.marker, toOut) : { push: toOut, flush: () => {} }
  // a dry run shows where each value goes, not what it is (SAFE_DEPLOY_* facts about the run excepted)
  const text = withEnv(ctx.dryRun ? { ...cmd, env: placeholders(cmd.env) } : cmd)
  if (text.split('\n').includes(END_OF_SCRIPT))
    throw new StageError(opts.stage, `${cmd.label}: a line of the script is ${END_OF_SCRIPT}`, name)
  let result: ExecResult
  try {
    result = await s.t.exec(REMOTE_SHELL, {
      stdin: `${text}\n${END_OF_SCRIPT}\n`,
      holdStdin: true,
      timeoutMs: opts.timeoutMs ?? ctx.config.ssh.command_timeout,
      signal: ctx.signal,
      label: cmd.label,
      parts: cmd.parts,
      onStdout: stdout.push,
      onStderr: cmd.user ? (opts.onOutput ?? err.push) : cmd.stream ? err.push : undefined
    })
  } catch (e) {
    throw new StageError(opts.stage, `${cmd.label} on ${name}: ${errorMessage(e)}`, name)
  } finally {
    stdout.flush()
    out.flush()
    err.flush()
  }
  if (result.code !== 0 && !opts.allowFail) {
    const detail = lastLines(result.stderr || result.stdout, 8)
    throw new StageError(
      opts.stage,
      `${cmd.label} failed on ${name} (exit ${result.code})${detail ? `: ${detail}` : ''}`,
      name
    )
  }
  return result
}

/** A stdout handler that takes `marker.line` out of the stream (once) and tells `seen` when it comes. */
function watchFor(
  marker: NonNullable<RunOptions['marker']>,
  next: ((chunk: string) => void) | undefined
): { push: (chunk: string) => void; flush: () => void } {
  let buf = ''
  let found = false
  const flush = () => {
    if (buf) next?.(buf)
    buf = ''
  }
  return {
    push: chunk => {
      if (found) return next?.(chunk)
      buf += chunk
      let i: number
      while (!found && (i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        if (line === marker.line) {
          found = true
          marker.seen()
        } else next?.(`${line}\n`)
      }
      if (found) flush()
    },
    flush
  }
}

function placeholders(env: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!env) return env
  return Object.fromEntries(
    Object.entries(env).map(([k, v]) => [k, k.startsWith('SAFE_DEPLOY_') ? v : `<${k}>`])
  )
}

/** Runs a raw command line (used for the tar stream, whose stdin is the archive). */
export async function runRaw(
  ctx: RunContext,
  s: HostSession,
  command: string,
  label: string,
  opts: RunOptions
): Promise<ExecResult> {
  let result: ExecResult
  try {
    result = await s.t.exec(command, {
      stdin: opts.stdin,
      timeoutMs: opts.timeoutMs ?? ctx.config.ssh.command_timeout,
      signal: ctx.signal,
      label,
      ...(opts.parts && opts.parts.length > 1 ? { parts: opts.parts } : {})
    })
  } catch (e) {
    throw new StageError(opts.stage, `${label} on ${s.host.name}: ${errorMessage(e)}`, s.host.name)
  }
  if (result.code !== 0 && !opts.allowFail) {
    const detail = lastLines(result.stderr || result.stdout, 8)
    throw new StageError(
      opts.stage,
      `${label} failed on ${s.host.name} (exit ${result.code})${detail ? `: ${detail}` : ''}`,
      s.host.name
    )
  }
  return result
}

export { lastLines } from '../core/excerpt.js'

/** Which hosts `onEveryHost` runs on and how many at once. */
export interface EveryHostOptions {
  /** Default: every session of the run. */
  hosts?: HostSession[]
  /** At most this many hosts at once (default: all at once). After a failure no further host starts. */
  limit?: number
}

/**
 * Runs `fn` on every host, at most `limit` at once (default: all); the first error (in host order) wins
 * after every started host has finished. Once a host failed, hosts not yet started are not started.
 */
export async function onEveryHost<T>(
  ctx: RunContext,
  fn: (s: HostSession) => Promise<T>,
  opts: EveryHostOptions = {}
): Promise<T[]> {
  const hosts = opts.hosts ?? ctx.sessions
  const limit = Math.max(1, Math.min(opts.limit ?? hosts.length, hosts.length))
  const results: PromiseSettledResult<T>[] = []
  let next = 0
  let failed = false
  const worker = async () => {
    while (next < hosts.length && !failed) {
      const i = next++
      try {
        results[i] = { status: 'fulfilled', value: await fn(hosts[i] as HostSession) }
      } catch (reason) {
        results[i] = { status: 'rejected', reason }
        failed = true
      }
    }
  }
  await Promise.all(Array.from({ length: limit }, worker))
  const failure = results.find(r => r?.status === 'rejected')
  if (failure) throw (failure as PromiseRejectedResult).reason
  return results.map(r => (r as PromiseFulfilledResult<T>).value)
}
