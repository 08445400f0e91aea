/**
 * What an OpenSSH user already has in their home: the agent, ~/.ssh/known_hosts, ~/.ssh/config host aliases
 * and the default identity files. Used by load.ts when safe-deploy.yml does not say (docs/ssh.md). The home is
 * the environment's (HOME, or USERPROFILE on Windows, as os.homedir() reads it); an environment with neither
 * has no home, and nothing here is looked at.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { userInfo } from 'node:os'
import { parseKnownHosts } from '../transport/hostkeys.js'
import { privateKeyProblem } from '../transport/ssh.js'
import {
  expandTokens,
  parseSshConfig,
  sshHostConfig,
  type SshConfigBlock,
  type SshHostConfig
} from './sshconfig.js'

/** OpenSSH's default identity files, in the order ssh tries them. */
export const DEFAULT_IDENTITIES = ['id_ed25519', 'id_ecdsa', 'id_rsa']
/** Windows' OpenSSH agent service. */
export const WINDOWS_AGENT_PIPE = '\\\\.\\pipe\\openssh-ssh-agent'

const PRIVATE_KEY_RE = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/

export function homeOf(env: NodeJS.ProcessEnv, platform = process.platform): string | undefined {
  return env.HOME || (platform === 'win32' ? env.USERPROFILE : undefined) || undefined
}

/** `~/.ssh/...` for messages, the real path in parentheses. */
export function shown(home: string, file: string): string {
  return file.startsWith(home) ? `~${file.slice(home.length).replace(/\\/g, '/')}` : file
}

export interface AgentChoice {
  /** For ssh2's `agent`. */
  agent?: string
  /** `the SSH agent (SSH_AUTH_SOCK)`. */
  label?: string
  /** What was looked at, for the "no key anywhere" error. */
  looked?: string
  problem?: string
}

/**
 * ssh.agent: `off`; `pageant` (Windows); a socket or pipe path; `auto` (the default): the agent only when no
 * key is configured: SSH_AUTH_SOCK, and on Windows the OpenSSH agent service's pipe when it is not set.
 */
export function chooseAgent(
  setting: string,
  keyConfigured: boolean,
  env: NodeJS.ProcessEnv,
  home: string | undefined,
  platform = process.platform
): AgentChoice {
  if (setting === 'off') return {}
  if (setting === 'pageant') {
    if (platform !== 'win32')
      return { problem: 'ssh.agent: pageant is only on Windows; give a socket path or auto' }
    return { agent: 'pageant', label: 'Pageant' }
  }
  if (setting !== 'auto') {
    if (!existsSync(setting))
      return { problem: `ssh.agent: ${setting} does not exist; start the agent or give its socket path` }
    return { agent: setting, label: `the SSH agent (${setting})` }
  }
  if (keyConfigured) return {}
  const sock = env.SSH_AUTH_SOCK
  if (sock) {
    if (existsSync(sock)) return { agent: sock, label: 'the SSH agent (SSH_AUTH_SOCK)' }
    return { looked: `the SSH agent (SSH_AUTH_SOCK is ${sock}, which does not exist)` }
  }
  // the pipe is the user's service: looked at on a laptop, not in a bare environment
  if (platform === 'win32' && home) {
    if (existsSync(WINDOWS_AGENT_PIPE))
      return { agent: WINDOWS_AGENT_PIPE, label: 'the OpenSSH agent service (openssh-ssh-agent)' }
    return { looked: `the SSH agent (SSH_AUTH_SOCK is not set, ${WINDOWS_AGENT_PIPE} is not running)` }
  }
  return { looked: 'the SSH agent (SSH_AUTH_SOCK is not set)' }
}

export interface IdentityChoice {
  key?: string
  /** `~/.ssh/id_ed25519`. */
  source?: string
  /** Each file looked at and why it was not used. */
  looked: string[]
}

/**
 * The first of `files` that exists and can be used: a private key, not passphrase-protected unless
 * ssh.passphrase is given (and right). Key material is returned, never put in `looked`.
 */
export function firstUsableKey(home: string, files: string[], passphrase?: string): IdentityChoice {
  const looked: string[] = []
  for (const file of files) {
    const name = shown(home, file)
    if (!existsSync(file)) {
      looked.push(`${name} (not found)`)
      continue
    }
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (e) {
      looked.push(`${name} (cannot be read: ${(e as NodeJS.ErrnoException).code ?? 'error'})`)
      continue
    }
    const problem = PRIVATE_KEY_RE.test(text) ? privateKeyProblem(text, passphrase) : 'invalid'
    if (problem === 'encrypted' && passphrase) looked.push(`${name} (ssh.passphrase does not open it)`)
    else if (problem === 'encrypted')
      looked.push(
        `${name} (passphrase-protected: add it to the agent with ssh-add, or give ssh.passphrase: env:NAME)`
      )
    else if (problem === 'invalid') looked.push(`${name} (not a private key ssh can use)`)
    else return { key: text, source: name, looked }
  }
  return { looked }
}

/** The default identity files of `home`, in OpenSSH's order. */
export const defaultIdentityFiles = (home: string): string[] =>
  DEFAULT_IDENTITIES.map(n => join(home, '.ssh', n))

/** ~/.ssh/config parsed; undefined when there is none. */
export function readSshConfig(home: string): SshConfigBlock[] | undefined {
  const file = join(home, '.ssh', 'config')
  if (!existsSync(file)) return undefined
  try {
    return parseSshConfig(readFileSync(file, 'utf8'))
  } catch {
    return undefined
  }
}

/** What ~/.ssh/config says for one alias, IdentityFile paths with `~` and `%` tokens expanded. */
export type HostAlias = Omit<SshHostConfig, 'ignored'> & {
  /** The alias as written in hosts[].address. */
  alias: string
}

/** What ~/.ssh/config says for `alias`; undefined when no Host block names it (a `Host *` alone does not count). */
export function aliasOf(
  blocks: SshConfigBlock[],
  alias: string,
  home: string,
  given: { user?: string; port?: number }
): HostAlias | undefined {
  const c = sshHostConfig(blocks, alias)
  const hostName = c.hostName ? expandTokens(c.hostName, tokens(home, alias, alias, '', 22)) : undefined
  const named = c.matched.some(m => m.split(/\s+/).some(p => p !== '*' && !p.startsWith('!')))
  if (!named) return undefined
  const user = given.user ?? c.user ?? 'root'
  const port = given.port ?? c.port ?? 22
  const t = tokens(home, hostName ?? alias, alias, user, port)
  return {
    alias,
    matched: c.matched,
    ...(hostName ? { hostName } : {}),
    ...(c.user ? { user: c.user } : {}),
    ...(c.port ? { port: c.port } : {}),
    identityFiles: c.identityFiles.map(f => expandTokens(f, t)),
    ...(c.hostKeyAlias ? { hostKeyAlias: c.hostKeyAlias } : {}),
    ...(c.proxyJump ? { proxyJump: c.proxyJump } : {})
  }
}

function tokens(home: string, host: string, alias: string, user: string, port: number) {
  return { home, host, alias, user, localUser: localUser(), port }
}

function localUser(): string {
  try {
    return userInfo().username
  } catch {
    return ''
  }
}

/**
 * ~/.ssh/known_hosts as OpenSSH reads it: a line it cannot parse is skipped (ssh does the same), not an
 * error; it is kept as a comment so that line numbers in messages stay those of the file.
 */
export function readHomeKnownHosts(home: string): { text?: string; file: string } {
  const file = join(home, '.ssh', 'known_hosts')
  if (!existsSync(file)) return { file }
  const lines = readFileSync(file, 'utf8').split(/\r?\n/)
  const text = lines
    .map(line => {
      try {
        parseKnownHosts(line)
        return line
      } catch {
        return '# (a line safe-deploy cannot read)'
      }
    })
    .join('\n')
  return { text, file }
}
