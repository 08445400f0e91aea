import { hostname, userInfo } from 'node:os'
import type { Readable } from 'node:stream'
import type { LoadedConfig, ResolvedHost } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { Layout } from '../commands/layout.js'
import { END_OF_SCRIPT, REMOTE_SHELL, withEnv, type RemoteCommand } from '../commands/command.js'
import type { ExecResult, Transport } from '../transport/types.js'
import { LocalTransport } from '../transport/local.js'
import { SshTransport } from '../transport/ssh.js'
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
  verbose: boolean
  /** When the run started (verify.logs `{started}`). */
  startedAt: Date
  /** Set when we hold the lock on the primary. */
  lock?: LockOwnerFields
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

/** Connects to every host in parallel; the first failure closes the others. */
export async function connectAll(ctx: RunContext): Promise<void> {
  const { loaded } = ctx
  const ssh = loaded.config.ssh
  if (loaded.auth.insecure && loaded.hosts.some(h => h.kind === 'ssh')) {
    ctx.log.warn(
      'WARNING: ssh.insecure_skip_host_key_check is true: host keys are NOT verified and anyone on the network path can impersonate your servers. Add known_hosts instead.'
    )
  }
  const results = await Promise.allSettled(
    loaded.hosts.map(async (host): Promise<HostSession> => {
      if (ctx.dryRun)
        return { host, t: ctx.dryRun.connect(host), layout: new Layout(host.path), releases: [] }
      if (host.kind === 'local')
        return { host, t: new LocalTransport(host.name), layout: new Layout(host.path), releases: [] }
      const t = await SshTransport.connect({
        label: host.name,
        address: host.address,
        port: host.port,
        user: host.user,
        privateKey: loaded.auth.privateKey ?? '',
        passphrase: loaded.auth.passphrase,
        knownHosts: loaded.auth.knownHosts,
        fingerprints: loaded.auth.fingerprints,
        insecureSkipHostKeyCheck: loaded.auth.insecure,
        jump: loaded.auth.jump,
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
      })
      return { host, t, layout: new Layout(host.path), releases: [] }
    })
  )
  const ok = results.flatMap(r => (r.status === 'fulfilled' ? [r.value] : []))
  const failed = results.findIndex(r => r.status === 'rejected')
  if (failed >= 0) {
    await Promise.all(ok.map(s => s.t.close()))
    const reason = (results[failed] as PromiseRejectedResult).reason
    const host = loaded.hosts[failed]?.name
    throw new StageError('preflight', errorMessage(reason), host)
  }
  ctx.sessions = ok
  for (const s of ok)
    ctx.log.info(
      `connected (${s.host.kind === 'local' ? 'local' : `${s.host.user}@${s.host.address}:${s.host.port}`})`,
      s.host.name
    )
}

export async function closeAll(ctx: RunContext): Promise<void> {
  await Promise.allSettled(ctx.sessions.map(s => s.t.close()))
}

export interface RunOptions {
  /** Stage name for errors. */
  stage: string
  /** Return the result instead of throwing on a non-zero exit. */
  allowFail?: boolean
  stdin?: string | Readable
  timeoutMs?: number
}

/** Runs a command on a host: the script travels over stdin; user command output streams to the log. */
export async function runOn(
  ctx: RunContext,
  s: HostSession,
  cmd: RemoteCommand,
  opts: RunOptions
): Promise<ExecResult> {
  const name = s.host.name
  if (cmd.user || ctx.verbose)
    ctx.log.info(`$ ${cmd.user ? cmd.script.split('\n').slice(1).join('; ') : cmd.label}`, name)
  const out = ctx.log.lineWriter(name)
  const err = ctx.log.lineWriter(name, cmd.user || cmd.stream ? 'info' : 'warn')
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
      onStdout: cmd.user ? out.push : undefined,
      onStderr: cmd.user || cmd.stream ? err.push : undefined
    })
  } catch (e) {
    throw new StageError(opts.stage, `${cmd.label} on ${name}: ${errorMessage(e)}`, name)
  } finally {
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
      label
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
