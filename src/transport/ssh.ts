import { NodeSSH } from 'node-ssh'
import ssh2, { type ClientChannel } from 'ssh2'
import type { ExecOptions, ExecResult, Transport } from './types.js'
import { createHostVerifier, HostKeyError, type HostVerifier } from './hostkeys.js'
import { feedStdin } from './stdin.js'

/**
 * A bastion (ProxyJump) that every connection of a run goes through: safe-deploy connects to it, asks it to
 * open a TCP connection to the host (`direct-tcpip`) and speaks SSH to the host inside that channel. Its host
 * key is checked with the host's known_hosts / fingerprints (or not, with the host's insecure opt-out).
 * Hosts given the same JumpTarget object share one bastion connection, closed with the last of them.
 */

/** Who logs in where, and with which key: a host's or a bastion's part of its target. */
export interface SshLogin {
  /** Shown in logs and errors: `web-1`, or for a bastion `web-1 via bastion.example.org: ...`. */
  label: string
  address: string
  port: number
  user: string
  /** Unset when the agent holds the keys; for a bastion, the host's key when not given. */
  privateKey?: string
  passphrase?: string
  /**
   * Where privateKey came from, for errors: `ssh.private_key`, `~/.ssh/id_ed25519` (a bastion's default:
   * ssh.jump.private_key).
   */
  keySource?: string
}

export type JumpTarget = SshLogin

export interface SshTarget extends SshLogin {
  /** The ssh-agent to ask for keys: a socket path, a Windows pipe, or `pageant` (ssh2's `agent`). */
  agent?: string
  /** The agent as errors name it: `the SSH agent (SSH_AUTH_SOCK)`. */
  agentLabel?: string
  /** known_hosts is looked up under this name instead of the address (OpenSSH's HostKeyAlias). */
  hostKeyAlias?: string
  knownHosts?: string
  fingerprints: string[]
  insecureSkipHostKeyCheck: boolean
  connectTimeoutMs: number
  connectRetries: number
  keepaliveIntervalMs: number
  /** Connect through this bastion instead of directly. */
  jump?: JumpTarget
  /** Called when a dropped connection is opened again, for the log. */
  onReconnect?: () => void
  /** Called before each retry, for the log. */
  onRetry?: (attempt: number, delayMs: number, error: Error) => void
  signal?: AbortSignal
}

/** Connection failures that a retry cannot fix: wrong host key, wrong credentials. */
class SshConnectError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean
  ) {
    super(message)
    this.name = 'SshConnectError'
  }
}

/** The command's channel did not open: the command did not start. */
class ChannelOpenError extends Error {}

/**
 * Whether a connect error means the host could not be reached (network, timeout, refused: what a retry could
 * fix), not that it answered wrongly (host key, credentials): only those may be skipped (--skip-unreachable).
 */
export function isUnreachable(e: unknown): boolean {
  return e instanceof SshConnectError && e.retryable
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(new Error('interrupted'))
    const t = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => (clearTimeout(t), reject(new Error('interrupted'))), {
      once: true
    })
  })

/** SSH to one host with node-ssh/ssh2: host key verified, retries with backoff, keepalive, TCP_NODELAY. */
export class SshTransport implements Transport {
  private closed = false

  private constructor(
    readonly label: string,
    private ssh: NodeSSH,
    private readonly target: SshTarget,
    private readonly bastion?: Bastion
  ) {}

  static async connect(target: SshTarget): Promise<SshTransport> {
    const bastion = target.jump ? Bastion.lease(target.jump) : undefined
    try {
      return new SshTransport(target.label, await connectWithRetries(target, bastion), target, bastion)
    } catch (e) {
      bastion?.release()
      throw e
    }
  }

  /**
   * A connection that dropped (network cut, sshd restarted) is opened again before the next command, with the
   * same host key checks and retries: a rollback must still reach the host after the deploy lost it.
   */
  private async connection() {
    if (this.closed) throw new Error(`connection to ${this.label} was closed`)
    if (!this.ssh.isConnected() || !this.ssh.connection) {
      this.ssh.dispose()
      this.target.onReconnect?.()
      this.ssh = await connectWithRetries({ ...this.target, signal: undefined }, this.bastion)
    }
    const client = this.ssh.connection
    if (!client) throw new Error(`not connected to ${this.label}`)
    return client
  }

  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    // an interrupted run starts nothing new (the undo passes a fresh signal)
    if (options.signal?.aborted) return Promise.reject(new Error('interrupted'))
    return this.connection()
      .then(client => this.execOn(client, command, options))
      .catch(async (e: unknown) => {
        if (!(e instanceof ChannelOpenError) || this.closed || options.signal?.aborted) throw e
        // the connection dropped before the command's channel opened (a bastion connection cut takes the
        // host's with it a moment later): the command never started, so it runs on a new connection
        await new Promise(resolve => setImmediate(resolve))
        if (this.ssh.isConnected()) throw e
        return this.execOn(await this.connection(), command, options)
      })
  }

  private execOn(
    client: NonNullable<NodeSSH['connection']>,
    command: string,
    options: ExecOptions
  ): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      client.exec(command, (err: Error | undefined, channel: ClientChannel) => {
        if (err) return reject(new ChannelOpenError(`cannot run a command on ${this.label}: ${err.message}`))
        let stdout = ''
        let stderr = ''
        let code: number | undefined
        let finished = false
        const stop = (why: string) => {
          if (finished) return
          finished = true
          // EOF before the end of the script: REMOTE_SHELL's watcher kills the command on the host. (A
          // signal request would not do: sshd refuses them for root logins and ssh2 sends none after EOF.)
          channel.end()
          channel.close()
          reject(new Error(why))
        }
        const timer = options.timeoutMs
          ? setTimeout(() => stop(`timed out after ${options.timeoutMs} ms`), options.timeoutMs)
          : undefined
        const onAbort = () => stop('interrupted')
        options.signal?.addEventListener('abort', onAbort, { once: true })
        // aborted while the channel was opening: the listener above would never fire
        if (options.signal?.aborted) onAbort()
        channel.stderr.setEncoding('utf8')
        const sink = options.stdoutSink
        if (sink) {
          channel.on('data', (c: Buffer) => {
            if (!sink.write(c)) {
              channel.pause()
              sink.once('drain', () => channel.resume())
            }
          })
        } else {
          channel.setEncoding('utf8')
          channel.on('data', (c: string) => {
            stdout += c
            options.onStdout?.(c)
          })
        }
        channel.stderr.on('data', (c: string) => {
          stderr += c
          options.onStderr?.(c)
        })
        channel.on('exit', (c: number | null, signal?: string) => {
          code = c ?? (signal ? 128 : 255)
        })
        channel.on('close', () => {
          if (timer) clearTimeout(timer)
          options.signal?.removeEventListener('abort', onAbort)
          if (finished) return
          finished = true
          if (code === undefined)
            reject(new Error(`connection to ${this.label} closed before the command ended`))
          else resolve({ code, stdout, stderr })
        })
        feedStdin(channel, options.stdin, options.holdStdin)
      })
    })
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.ssh.dispose()
    this.bastion?.release()
  }
}

/**
 * One connection to a jump host, shared by the hosts leased on the same JumpTarget: opened by the first host
 * that needs it (with the same host key checks, timeouts and retries as a host), opened again when it dropped,
 * closed when the last host released it.
 */
class Bastion {
  private static readonly open = new Map<JumpTarget, Bastion>()
  private users = 0
  private connecting?: Promise<NodeSSH>
  private ssh?: NodeSSH

  private constructor(readonly jump: JumpTarget) {}

  static lease(jump: JumpTarget): Bastion {
    let bastion = Bastion.open.get(jump)
    if (!bastion) Bastion.open.set(jump, (bastion = new Bastion(jump)))
    bastion.users++
    return bastion
  }

  release(): void {
    if (--this.users > 0) return
    Bastion.open.delete(this.jump)
    this.ssh?.dispose()
    this.ssh = undefined
    this.connecting = undefined
  }

  /**
   * A channel from the bastion to target's address and port, to carry the SSH connection to the host. A
   * failure to reach the bastion is final for this attempt (its own retries are spent): it says "jump host".
   */
  async channel(target: SshTarget): Promise<ClientChannel> {
    const client = (await this.connection(target)).connection
    if (!client) throw new SshConnectError(`jump host: not connected to ${this.jump.label}`, true)
    return new Promise<ClientChannel>((resolve, reject) => {
      let timedOut = false
      const timer = setTimeout(() => {
        timedOut = true
        reject(
          new SshConnectError(
            `${this.jump.label} did not open a connection to ${target.address}:${target.port} within ${target.connectTimeoutMs} ms`,
            true
          )
        )
      }, target.connectTimeoutMs)
      client.forwardOut('127.0.0.1', 0, target.address, target.port, (err, channel) => {
        clearTimeout(timer)
        // opened after we gave up: nobody will use it
        if (timedOut) return err ? undefined : channel.close()
        if (err)
          reject(
            new SshConnectError(
              `${this.jump.label} cannot open a connection to ${target.address}:${target.port}: ${err.message}`,
              true
            )
          )
        else resolve(channel)
      })
    })
  }

  private async connection(target: SshTarget): Promise<NodeSSH> {
    if (this.ssh?.isConnected() && this.ssh.connection) return this.ssh
    this.ssh?.dispose()
    this.ssh = undefined
    this.connecting ??= connectWithRetries({
      ...target,
      label: this.jump.label,
      address: this.jump.address,
      port: this.jump.port,
      user: this.jump.user,
      privateKey: this.jump.privateKey ?? target.privateKey,
      passphrase: this.jump.privateKey ? this.jump.passphrase : target.passphrase,
      keySource: this.jump.privateKey ? (this.jump.keySource ?? 'ssh.jump.private_key') : target.keySource,
      // the host's HostKeyAlias is the host's, not the bastion's
      hostKeyAlias: undefined,
      jump: undefined,
      onRetry: (attempt, delay, e) => target.onRetry?.(attempt, delay, new Error(`jump host: ${e.message}`))
    })
      .then(ssh => {
        // released while connecting: nobody will close it
        if (this.users <= 0) ssh.dispose()
        else this.ssh = ssh
        return ssh
      })
      .catch((e: unknown) => {
        const message = e instanceof Error ? e.message : String(e)
        // its own retries are spent: the host's loop must not retry the bastion again
        throw new SshConnectError(`jump host: ${message}`, false)
      })
      .finally(() => (this.connecting = undefined))
    return this.connecting
  }
}

async function connectWithRetries(target: SshTarget, bastion?: Bastion): Promise<NodeSSH> {
  const attempts = target.connectRetries + 1
  let lastError: Error = new Error('no attempt made')
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await (bastion ? connectVia(target, bastion) : connectOnce(target))
    } catch (e) {
      lastError = e as Error
      const retryable = !(e instanceof SshConnectError) || e.retryable
      if (!retryable || attempt === attempts || target.signal?.aborted) break
      const delay = Math.min(1000 * 2 ** (attempt - 1), 8000)
      target.onRetry?.(attempt, delay, lastError)
      await sleep(delay, target.signal)
    }
  }
  throw lastError
}

/** Errors name both ends: `web-1 via bastion.example.org: ...`. */
async function connectVia(target: SshTarget, bastion: Bastion): Promise<NodeSSH> {
  try {
    return await connectOnce(target, () => bastion.channel(target))
  } catch (e) {
    throw new SshConnectError(
      `${target.label} via ${bastion.jump.label}: ${(e as Error).message}`,
      !(e instanceof SshConnectError) || e.retryable
    )
  }
}

/** `openSocket`: the stream to speak SSH over (a channel through a bastion) instead of a TCP connection. */
async function connectOnce(target: SshTarget, openSocket?: () => Promise<ClientChannel>): Promise<NodeSSH> {
  const verifier = target.insecureSkipHostKeyCheck
    ? undefined
    : createHostVerifier({
        address: target.hostKeyAlias ?? target.address,
        port: target.hostKeyAlias ? 22 : target.port,
        knownHosts: target.knownHosts,
        fingerprints: target.fingerprints
      })
  const sock = await openSocket?.()
  const ssh = new NodeSSH()
  try {
    await ssh.connect({
      ...(sock ? { sock } : { host: target.address, port: target.port }),
      username: target.user,
      privateKey: target.privateKey,
      passphrase: target.privateKey ? target.passphrase : undefined,
      agent: target.agent,
      readyTimeout: target.connectTimeoutMs,
      keepaliveInterval: target.keepaliveIntervalMs,
      keepaliveCountMax: 3,
      tryKeyboard: false,
      hostVerifier: verifier ? (key: Buffer) => verifier.verify(key) : () => true,
      // ask for the key types known_hosts can vouch for; a configured fingerprint may be of any type
      algorithms:
        verifier && verifier.algorithms.length && !target.fingerprints.length
          ? { serverHostKey: verifier.algorithms }
          : undefined
    } as Parameters<NodeSSH['connect']>[0])
  } catch (e) {
    ssh.dispose()
    const message = (e as Error).message
    // known_hosts has only other key types than the server has (RSA there, ed25519 here): the handshake
    // fails before any key is offered. Ask the server for its key once more, to say which one it has.
    if (verifier && !verifier.failure() && /no matching host key format/i.test(message))
      await probeHostKey(target, verifier, openSocket)
    const hostKeyFailure = verifier?.failure()
    if (hostKeyFailure) throw new SshConnectError(hostKeyFailure.message, false)
    if (/authentication methods failed|All configured authentication/i.test(message)) {
      throw new SshConnectError(await authFailure(target), false)
    }
    if (/Cannot parse privateKey|Encrypted private OpenSSH key|passphrase/i.test(message)) {
      throw new SshConnectError(`${target.keySource ?? 'ssh.private_key'} cannot be used: ${message}`, false)
    }
    throw new SshConnectError(`cannot connect to ${target.label}: ${message}`, true)
  }
  ssh.connection?.setNoDelay(true)
  // A connection that drops later (host rebooted, network cut) must fail the running command, not crash us.
  ssh.connection?.on('error', () => undefined)
  return ssh
}

/** The refused credentials named by their source: the key (and where it came from), the agent and its keys. */
async function authFailure(target: SshTarget): Promise<string> {
  const tried: string[] = []
  if (target.privateKey)
    tried.push(
      target.keySource && target.keySource !== 'ssh.private_key'
        ? `the private key from ${target.keySource}`
        : 'the private key'
    )
  if (target.agent) {
    const count = await agentKeyCount(target.agent)
    const label = target.agentLabel ?? `the SSH agent (${target.agent})`
    tried.push(
      count === undefined
        ? `the keys of ${label}, which did not answer`
        : `the ${count} key${count === 1 ? '' : 's'} offered by ${label}`
    )
  }
  const fix =
    target.agent && !target.privateKey
      ? `add the key to the agent (\`ssh-add\`) and its public key to ~${target.user}/.ssh/authorized_keys on the host`
      : `check that the public key is in ~${target.user}/.ssh/authorized_keys on the host`
  return `${target.user}@${target.label} refused ${tried.join(' and ') || 'every key'} (authentication failed); ${fix}`
}

/** How many keys the agent holds; undefined when it cannot be asked. */
export function agentKeyCount(agent: string): Promise<number | undefined> {
  return new Promise(resolve => {
    try {
      const timer = setTimeout(() => resolve(undefined), 5000)
      ssh2.createAgent(agent).getIdentities((err, keys) => {
        clearTimeout(timer)
        resolve(err ? undefined : (keys?.length ?? 0))
      })
    } catch {
      resolve(undefined)
    }
  })
}

/**
 * Why a private key cannot be used (not a key, passphrase-protected without the passphrase, wrong
 * passphrase); undefined when ssh2 can use it. The message never contains key material.
 */
export function privateKeyProblem(key: string, passphrase?: string): 'encrypted' | 'invalid' | undefined {
  const parsed = ssh2.utils.parseKey(key, passphrase)
  if (!(parsed instanceof Error)) return undefined
  return /encrypted|passphrase|decrypt/i.test(parsed.message) ? 'encrypted' : 'invalid'
}

/**
 * Connects with every host key algorithm and rejects whatever key the server offers, only to learn which
 * one it is: the verifier records the rejection (type, fingerprint, what to do). Nothing authenticates.
 */
async function probeHostKey(
  target: SshTarget,
  verifier: HostVerifier,
  openSocket?: () => Promise<ClientChannel>
): Promise<void> {
  const probe = new NodeSSH()
  try {
    const sock = await openSocket?.()
    await probe.connect({
      ...(sock ? { sock } : { host: target.address, port: target.port }),
      username: target.user,
      readyTimeout: target.connectTimeoutMs,
      tryKeyboard: false,
      hostVerifier: (key: Buffer) => verifier.verify(key) && false
    } as Parameters<NodeSSH['connect']>[0])
  } catch {
    /* rejected, as intended; or the server is gone: then the first error stands */
  } finally {
    probe.dispose()
  }
}

export { HostKeyError }
