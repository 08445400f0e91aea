import { NodeSSH } from 'node-ssh'
import type { ClientChannel } from 'ssh2'
import type { ExecOptions, ExecResult, Transport } from './types.js'
import { createHostVerifier, HostKeyError, type HostVerifier } from './hostkeys.js'
import { feedStdin } from './stdin.js'

export interface SshTarget {
  label: string
  address: string
  port: number
  user: string
  privateKey: string
  passphrase?: string
  knownHosts?: string
  fingerprints: string[]
  insecureSkipHostKeyCheck: boolean
  connectTimeoutMs: number
  connectRetries: number
  keepaliveIntervalMs: number
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
    private readonly target: SshTarget
  ) {}

  static async connect(target: SshTarget): Promise<SshTransport> {
    return new SshTransport(target.label, await connectWithRetries(target), target)
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
      this.ssh = await connectWithRetries({ ...this.target, signal: undefined })
    }
    const client = this.ssh.connection
    if (!client) throw new Error(`not connected to ${this.label}`)
    return client
  }

  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    // an interrupted run starts nothing new (the undo passes a fresh signal)
    if (options.signal?.aborted) return Promise.reject(new Error('interrupted'))
    return this.connection().then(client => this.execOn(client, command, options))
  }

  private execOn(
    client: NonNullable<NodeSSH['connection']>,
    command: string,
    options: ExecOptions
  ): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      client.exec(command, (err: Error | undefined, channel: ClientChannel) => {
        if (err) return reject(new Error(`cannot run a command on ${this.label}: ${err.message}`))
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
    this.closed = true
    this.ssh.dispose()
  }
}

async function connectWithRetries(target: SshTarget): Promise<NodeSSH> {
  const attempts = target.connectRetries + 1
  let lastError: Error = new Error('no attempt made')
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await connectOnce(target)
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

async function connectOnce(target: SshTarget): Promise<NodeSSH> {
  const verifier = target.insecureSkipHostKeyCheck
    ? undefined
    : createHostVerifier({
        address: target.address,
        port: target.port,
        knownHosts: target.knownHosts,
        fingerprints: target.fingerprints
      })
  const ssh = new NodeSSH()
  try {
    await ssh.connect({
      host: target.address,
      port: target.port,
      username: target.user,
      privateKey: target.privateKey,
      passphrase: target.passphrase,
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
      await probeHostKey(target, verifier)
    const hostKeyFailure = verifier?.failure()
    if (hostKeyFailure) throw new SshConnectError(hostKeyFailure.message, false)
    if (/authentication methods failed|All configured authentication/i.test(message)) {
      throw new SshConnectError(
        `${target.user}@${target.label} refused the private key (authentication failed); check that the public key is in ~${target.user}/.ssh/authorized_keys on the host`,
        false
      )
    }
    if (/Cannot parse privateKey|Encrypted private OpenSSH key|passphrase/i.test(message)) {
      throw new SshConnectError(`ssh.private_key cannot be used: ${message}`, false)
    }
    throw new SshConnectError(`cannot connect to ${target.label}: ${message}`, true)
  }
  ssh.connection?.setNoDelay(true)
  // A connection that drops later (host rebooted, network cut) must fail the running command, not crash us.
  ssh.connection?.on('error', () => undefined)
  return ssh
}

/**
 * Connects with every host key algorithm and rejects whatever key the server offers, only to learn which
 * one it is: the verifier records the rejection (type, fingerprint, what to do). Nothing authenticates.
 */
async function probeHostKey(target: SshTarget, verifier: HostVerifier): Promise<void> {
  const probe = new NodeSSH()
  try {
    await probe.connect({
      host: target.address,
      port: target.port,
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
