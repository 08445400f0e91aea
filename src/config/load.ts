import { readFileSync, existsSync } from 'node:fs'
import { dirname, resolve, isAbsolute } from 'node:path'
import { parse as parseYaml, YAMLParseError } from 'yaml'
import type { ZodError } from 'zod'
import { WINDOWS_DRIVE, configSchema, type Config } from './schema.js'
import { ConfigError } from '../core/exit.js'
import {
  cacheProblems,
  databaseRollbackMode,
  migrationProblems,
  roleProblems,
  verifyProblems
} from './rules.js'
import { notifySecrets } from './notify.js'
import { checkBackupConfig } from '../backup-engines/plan.js'
import { databaseSecrets } from '../backup-engines/connection.js'
import type { JumpTarget } from '../transport/ssh.js'
import {
  aliasOf,
  chooseAgent,
  defaultIdentityFiles,
  firstUsableKey,
  homeOf,
  readHomeKnownHosts,
  readSshConfig,
  shown,
  type HostAlias
} from './sshhome.js'
import { parseProxyJump, type SshConfigBlock } from './sshconfig.js'

/** Values given on the command line or as Action inputs; they win over the file. */
export interface Overrides {
  /**
   * Selects hosts of the config by name or address (`address` or `address:port`), several separated by
   * commas; each keeps its own settings (name, path, port, user, primary). An unknown one is a config error.
   */
  host?: string
  /** The same as `host`, under the name `--hosts` / the input `hosts` (errors name the flag that was used). */
  hosts?: string
  /**
   * Selects the hosts that have any of these roles (comma-separated). With `hosts` too, a host must match
   * both (the intersection): `--roles web --hosts web-1,worker-1` is web-1. An unknown role is a config error.
   */
  roles?: string
  /** Unreachable hosts at connect are left out (loudly) instead of stopping the run; never the primary. */
  skipUnreachable?: boolean
  port?: number
  user?: string
  path?: string
  privateKey?: string
  privateKeyFile?: string
  knownHosts?: string
  knownHostsFile?: string
  insecureSkipHostKeyCheck?: boolean
  /** `--skip-test`: the tests ran in an earlier CI job; the deploy runs no stages.test. */
  skipTest?: boolean
}

export interface ResolvedHost {
  /** Shown in logs and errors. */
  name: string
  kind: 'ssh' | 'local'
  address: string
  port: number
  user: string
  /** Deploy root on this host. */
  path: string
  primary: boolean
  /** hosts[].roles of the config. */
  roles: string[]
  /** The ~/.ssh/config alias the address named (its HostName, User, Port were taken where the config is silent). */
  alias?: HostAlias
  /** The host's own key (an IdentityFile of its alias), when ssh.private_key is not given. */
  privateKey?: string
  /** Where privateKey came from: `~/.ssh/id_deploy`. */
  keySource?: string
  /** known_hosts is looked up under this name (HostKeyAlias of the alias). */
  hostKeyAlias?: string
  /** The alias's ProxyJump (one hop), when ssh.jump is not given. */
  jump?: JumpTarget
}

export interface SshAuth {
  /** ssh.jump: the bastion every SSH host is reached through (one object: one shared connection). */
  jump?: JumpTarget
  privateKey?: string
  passphrase?: string
  knownHosts?: string
  fingerprints: string[]
  insecure: boolean
  /** Where privateKey came from when not from ssh.private_key(_file): `~/.ssh/id_ed25519`. */
  keySource?: string
  /** The ssh-agent (ssh2's `agent`: a socket, a Windows pipe, `pageant`). */
  agent?: string
  /** `the SSH agent (SSH_AUTH_SOCK)`. */
  agentLabel?: string
  /** Where knownHosts came from when not from ssh.known_hosts(_file): `~/.ssh/known_hosts`. */
  hostKeySource?: string
}

export interface LoadedConfig {
  config: Config
  /** Absolute path of the config file. */
  file: string
  /** Directory relative paths in the config are resolved against. */
  baseDir: string
  /** Absolute source dir. */
  sourceDir: string
  hosts: ResolvedHost[]
  /**
   * The config's primary when the selection (`--hosts`, `--roles`) leaves it out: the lock is global, so a run
   * connects to it too, for the lock alone (nothing is staged, switched or recorded there). Unset when the
   * primary is selected (it is then `hosts.find(h => h.primary)`).
   */
  lockHost?: ResolvedHost
  /** `--skip-unreachable`: a host that cannot be reached at connect is left out, loudly; never the primary. */
  skipUnreachable?: boolean
  auth: SshAuth
  /** Every secret value, for redaction and core.setSecret. */
  secrets: string[]
  /**
   * `env:` values whose variable is not set, under keys only some commands use (LAZY_KEYS): left out of
   * `config`; `requireEnv` refuses a command that uses one.
   */
  unresolved: Unresolved[]
  /** Every `env:NAME` of the config (set or not), by key: what `variablesFor` reads. */
  references: Unresolved[]
}

export interface Unresolved {
  /** The key path, e.g. backup.databases[0].url. */
  key: string
  /** The variable its env:NAME names. */
  variable: string
}

const ENV_REF = /^env:([A-Za-z_][A-Za-z0-9_]*)$/
/**
 * Keys whose `env:` variable may be unset when the config loads: only some commands use them (`requireEnv`).
 * `releases`, `status`, `plan`, `lock` and `backups list` run without DATABASE_URL or AGE_IDENTITY; a nightly
 * backup runs without the identity (it encrypts to the recipients).
 */
const LAZY_KEYS = [/^env\./, /^backup\.databases\[\d+\]\./, /^backup\.encrypt\.identity$/]

/** Whether the variable of an `env:` value at this key may be unset when the config loads (LAZY_KEYS). */
export const isLazyKey = (key: string): boolean => LAZY_KEYS.some(re => re.test(key))

/** Key paths whose `env:` values are secrets (redacted everywhere). */
const SECRET_PATHS = [
  /^ssh\.private_key$/,
  /^ssh\.passphrase$/,
  /^ssh\.jump\.(private_key|passphrase)$/,
  /^env\./,
  /^backup\.databases\[\d+\]\.(url|password)$/,
  /^backup\.encrypt\.identity$/,
  /^notify\[\d+\]\./
]

function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else out += out ? `.${String(part)}` : String(part)
  }
  return out || '(top level)'
}

/** What walking the raw config found: secrets (with where they came from), problems, unset variables. */
interface EnvScan {
  secrets: { where: string; value: string; name: string }[]
  problems: string[]
  /** Key path -> the variable an `env:NAME` there names (and the path), for every one unset or empty. */
  missing: Map<string, { name: string; path: PropertyKey[] }>
  /** Every `env:NAME` of the config, set or not. */
  references: Unresolved[]
}

/**
 * Replaces `env:NAME` strings with the variable's value, recording secrets and missing variables. A NUL byte
 * anywhere (in the file, a flag, or a variable's value) is a problem naming the key: no shell, file name or
 * log line can carry one.
 */
function resolveEnvRefs(node: unknown, path: PropertyKey[], env: NodeJS.ProcessEnv, scan: EnvScan): unknown {
  if (typeof node === 'string') {
    const where = formatPath(path)
    const m = ENV_REF.exec(node)
    if (!m) {
      if (node.includes('\0')) scan.problems.push(`${where}: contains a NUL byte`)
      return node
    }
    const name = m[1] as string
    const value = env[name]
    scan.references.push({ key: where, variable: name })
    if (value === undefined || value === '') {
      scan.missing.set(where, { name, path })
      return ''
    }
    if (value.includes('\0')) {
      scan.problems.push(`${where}: the value of environment variable ${name} contains a NUL byte`)
      return ''
    }
    if (SECRET_PATHS.some(re => re.test(where))) scan.secrets.push({ where, value, name })
    return value
  }
  if (Array.isArray(node)) return node.map((item, i) => resolveEnvRefs(item, [...path, i], env, scan))
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(node)) {
      if (k.includes('\0')) scan.problems.push(`${formatPath([...path, k])}: the key contains a NUL byte`)
      out[k] = resolveEnvRefs(v, [...path, k], env, scan)
    }
    return out
  }
  return node
}

type Issue = ZodError['issues'][number]

/** How far a union branch is from the input: a wrong basic shape or literal means "not this branch". */
function branchDistance(issues: Issue[]): number {
  return issues.reduce((n, i) => {
    if (i.code === 'invalid_type' && i.path.length === 0) return n + 1000
    if (i.code === 'invalid_value') return n + 100
    return n + 1
  }, 0)
}

/** Flattens issues; for a union ("Invalid input") reports the errors of the branch the input came closest to. */
function flattenIssues(
  issues: readonly Issue[],
  prefix: PropertyKey[] = []
): { path: PropertyKey[]; message: string }[] {
  return issues.flatMap(issue => {
    const path = [...prefix, ...issue.path]
    if (issue.code === 'invalid_union' && issue.errors.length) {
      const best = [...issue.errors].sort((a, b) => branchDistance(a) - branchDistance(b))[0] ?? []
      return flattenIssues(best, path)
    }
    return [{ path, message: issue.message }]
  })
}

export function formatZodError(error: ZodError): string[] {
  return flattenIssues(error.issues).map(i => `${formatPath(i.path)}: ${i.message}`)
}

function readTextFile(file: string, key: string, baseDir: string, problems: string[]): string | undefined {
  const full = isAbsolute(file) ? file : resolve(baseDir, file)
  try {
    return readFileSync(full, 'utf8')
  } catch (e) {
    problems.push(`${key}: cannot read ${full}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`)
    return undefined
  }
}

function applyOverrides(raw: Record<string, unknown>, o: Overrides): void {
  const ssh = (raw.ssh && typeof raw.ssh === 'object' ? raw.ssh : (raw.ssh = {})) as Record<string, unknown>
  if (o.path) {
    raw.path = o.path
    // an explicit override is for every host, including those with their own path
    if (Array.isArray(raw.hosts))
      for (const h of raw.hosts) if (h && typeof h === 'object') delete (h as Record<string, unknown>).path
  }
  if (Array.isArray(raw.hosts)) {
    for (const h of raw.hosts) {
      if (!h || typeof h !== 'object' || (h as Record<string, unknown>).local) continue
      if (o.port) (h as Record<string, unknown>).port = o.port
      if (o.user) (h as Record<string, unknown>).user = o.user
    }
  }
  if (o.privateKey) {
    ssh.private_key = o.privateKey
    delete ssh.private_key_file
  } else if (o.privateKeyFile) {
    ssh.private_key_file = o.privateKeyFile
    delete ssh.private_key
  }
  if (o.knownHosts) {
    ssh.known_hosts = o.knownHosts
    delete ssh.known_hosts_file
  } else if (o.knownHostsFile) {
    ssh.known_hosts_file = o.knownHostsFile
    delete ssh.known_hosts
  }
  if (o.insecureSkipHostKeyCheck) ssh.insecure_skip_host_key_check = true
  if (o.skipTest && raw.stages && typeof raw.stages === 'object')
    delete (raw.stages as Record<string, unknown>).test
}

/**
 * Reads, resolves and validates a config. Every problem is collected and reported together, each naming
 * its key path; nothing here touches the network.
 */
export function loadConfig(
  file: string,
  overrides: Overrides = {},
  env: NodeJS.ProcessEnv = process.env
): LoadedConfig {
  const abs = resolve(file)
  if (!existsSync(abs)) {
    throw new ConfigError(
      `config file ${abs} not found; create one (see README "Configuration") or pass --config`
    )
  }
  let parsed: unknown
  try {
    parsed = parseYaml(readFileSync(abs, 'utf8'))
  } catch (e) {
    const detail = e instanceof YAMLParseError ? e.message : String(e)
    throw new ConfigError(`${abs}: not valid YAML: ${detail}`)
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`${abs}: expected a mapping of keys (app, path, hosts, ...) at the top level`)
  }
  return validateConfig(parsed as Record<string, unknown>, abs, overrides, env)
}

export function validateConfig(
  parsed: Record<string, unknown>,
  file: string,
  overrides: Overrides = {},
  env: NodeJS.ProcessEnv = process.env
): LoadedConfig {
  const baseDir = dirname(file)
  const scan: EnvScan = { secrets: [], problems: [], missing: new Map(), references: [] }
  const raw = structuredClone(parsed)
  applyOverrides(raw, overrides)
  const resolved = resolveEnvRefs(raw, [], env, scan) as Record<string, unknown>
  const problems = [...scan.problems]
  // a variable that only some commands use may be unset: it is left out, and those commands ask for it
  const unresolved: Unresolved[] = []
  for (const [where, { name, path }] of scan.missing) {
    if (LAZY_KEYS.some(re => re.test(where))) {
      unresolved.push({ key: where, variable: name })
      removeAt(resolved, path)
    } else problems.push(missingVariable(where, name))
  }
  const result = configSchema.safeParse(resolved)
  // a value whose variable is missing (or held a NUL) was already reported once; its validation error is noise
  const reported = new Set([...scan.missing.keys(), ...scan.problems.map(p => p.slice(0, p.indexOf(': ')))])
  if (!result.success)
    problems.push(...formatZodError(result.error).filter(p => !reported.has(p.slice(0, p.indexOf(': ')))))
  if (!result.success || problems.length) throw configProblems(file, problems)
  const config = result.data
  /** Secrets with the key they came from, so that one too short to redact can be refused by name. */
  const secrets: { where: string; value: string; name?: string }[] = [...scan.secrets]

  // ~/.ssh/config aliases: HostName, User, Port where safe-deploy.yml does not give them
  const home = homeOf(env)
  const sshConfig = home ? readSshConfig(home) : undefined
  const rawHosts = (Array.isArray(resolved.hosts) ? resolved.hosts : []) as Record<string, unknown>[]
  const aliasFor = (i: number, address: string) => {
    if (!home || !sshConfig) return undefined
    const given = rawHosts[i] ?? {}
    return aliasOf(sshConfig, address, home, {
      user: typeof given.user === 'string' ? given.user : undefined,
      port: typeof given.port === 'number' ? given.port : undefined
    })
  }
  const hosts: ResolvedHost[] = config.hosts.map((h, i) =>
    'local' in h
      ? {
          name: h.name ?? 'local',
          kind: 'local',
          address: 'localhost',
          port: 0,
          user: '',
          path: h.path ?? config.path,
          primary: !!h.primary,
          roles: h.roles ?? []
        }
      : withAlias(
          {
            name: h.name ?? (h.port === 22 ? h.address : `${h.address}:${h.port}`),
            kind: 'ssh',
            address: h.address,
            port: h.port,
            user: h.user,
            path: h.path ?? config.path,
            primary: !!h.primary,
            roles: h.roles ?? []
          },
          aliasFor(i, h.address),
          rawHosts[i] ?? {}
        )
  )
  const names = new Set<string>()
  for (const h of hosts) {
    if (names.has(h.name)) problems.push(`hosts: two hosts are named ${h.name}; give each a distinct name`)
    names.add(h.name)
    if (h.kind === 'ssh' && WINDOWS_DRIVE.test(h.path))
      problems.push(
        `hosts: ${h.name}: path ${h.path} is a Windows path; an SSH host needs a POSIX path such as /srv/app`
      )
  }
  const given = new Set(hosts.flatMap(h => h.roles))
  for (const role of Object.keys(config.roles)) {
    if (!given.has(role))
      problems.push(`roles.${role}: no host has this role; add it to a host's roles or remove it`)
  }
  problems.push(...roleProblems(config, hosts))
  const primaries = hosts.filter(h => h.primary)
  if (primaries.length > 1) problems.push(`hosts: only one host can be primary, found ${primaries.length}`)
  if (primaries.length === 0 && hosts[0]) hosts[0].primary = true
  let lockHost: ResolvedHost | undefined
  const picked = selectHosts(hosts, overrides)
  if ('problem' in picked) problems.push(picked.problem)
  else if (picked.hosts !== hosts) {
    // the lock stays on the config's primary; the first selected host runs what runs once (backup, migrate)
    const configPrimary = hosts.find(h => h.primary)
    if (configPrimary && !picked.hosts.includes(configPrimary)) {
      lockHost = { ...configPrimary, primary: false }
      const first = picked.hosts[0]
      if (first) picked.hosts[0] = { ...first, primary: true }
    }
    hosts.splice(0, hosts.length, ...picked.hosts)
  }

  const ssh = config.ssh
  const auth: SshAuth = { fingerprints: ssh.fingerprints, insecure: ssh.insecure_skip_host_key_check }
  if (ssh.private_key && ssh.private_key_file) {
    problems.push('ssh: give private_key or private_key_file, not both')
  }
  auth.privateKey =
    ssh.private_key ?? readOptional(ssh.private_key_file, 'ssh.private_key_file', baseDir, problems)
  auth.passphrase = ssh.passphrase
  // however the key arrived (file, inline, Action input), it is a secret
  if (auth.privateKey) secrets.push({ where: 'ssh.private_key', value: auth.privateKey })
  if (auth.passphrase) secrets.push({ where: 'ssh.passphrase', value: auth.passphrase })
  if (ssh.known_hosts && ssh.known_hosts_file)
    problems.push('ssh: give known_hosts or known_hosts_file, not both')
  auth.knownHosts =
    ssh.known_hosts ?? readOptional(ssh.known_hosts_file, 'ssh.known_hosts_file', baseDir, problems)

  if (hosts.some(h => h.kind === 'ssh')) {
    const keyGiven = !!(ssh.private_key || ssh.private_key_file)
    if (!keyGiven)
      problems.push(...homeKeys(auth, lockHost ? [...hosts, lockHost] : hosts, ssh.agent, env, home, secrets))
    else if (ssh.agent !== 'auto') problems.push(...homeKeys(auth, [], ssh.agent, env, home, secrets))
    if (auth.privateKey && !/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(auth.privateKey)) {
      problems.push('ssh.private_key: expected a PEM/OpenSSH private key (-----BEGIN ... PRIVATE KEY-----)')
    }
    if (
      !auth.insecure &&
      !auth.knownHosts &&
      auth.fingerprints.length === 0 &&
      !problems.some(p => p.startsWith('ssh.known_hosts'))
    ) {
      const fromHome = home ? readHomeKnownHosts(home) : undefined
      if (fromHome?.text !== undefined) {
        auth.knownHosts = fromHome.text
        auth.hostKeySource = shown(home as string, fromHome.file)
      } else
        problems.push(
          'ssh.known_hosts: host keys are verified; give known_hosts (lines from `ssh-keyscan`), known_hosts_file or fingerprints, or opt out with ssh.insecure_skip_host_key_check: true' +
            (fromHome
              ? `; looked at ${shown(home as string, fromHome.file)} (${fromHome.file}): not found`
              : '')
        )
    }
  }
  if (ssh.jump) auth.jump = jumpTarget(ssh.jump, baseDir, problems, secrets)
  else if (home && sshConfig)
    problems.push(...proxyJumps(lockHost ? [...hosts, lockHost] : hosts, sshConfig, home, auth, secrets))
  // database passwords (inline or in a URL) and the age identity are secrets, however they were given
  const backupCheck = checkBackupConfig(config.backup)
  // a database whose URL or password is not set yet cannot be checked; the commands that use it refuse
  const waiting = [...unresolvedDatabases(unresolved).keys()].map(i => `backup.databases[${i}]`)
  problems.push(
    ...backupCheck.problems.filter(p => !waiting.some(w => p.startsWith(`${w}.`) || p.startsWith(`${w}:`)))
  )
  for (const value of backupCheck.secrets) secrets.push({ where: backupSecretKey(config, value), value })
  // notification tokens and webhook URLs (their path is the credential), however they were given
  secrets.push(...notifySecrets(config.notify))
  problems.push(...migrationProblems(config))
  problems.push(...cacheProblems(config))
  problems.push(...verifyProblems(config))
  problems.push(...shortSecretProblems(secrets))
  if (problems.length) throw configProblems(file, problems)
  return {
    config,
    file,
    baseDir,
    sourceDir: resolve(baseDir, config.source.dir),
    hosts,
    ...(lockHost ? { lockHost } : {}),
    ...(overrides.skipUnreachable ? { skipUnreachable: true } : {}),
    auth,
    secrets: [...new Set(secrets.map(s => s.value))],
    unresolved,
    references: scan.references
  }
}

/** A host whose address is a ~/.ssh/config alias: HostName, User, Port where safe-deploy.yml is silent. */
function withAlias(
  host: ResolvedHost,
  alias: HostAlias | undefined,
  raw: Record<string, unknown>
): ResolvedHost {
  if (!alias) return host
  return {
    ...host,
    address: alias.hostName ?? host.address,
    port: typeof raw.port === 'number' ? host.port : (alias.port ?? host.port),
    user: typeof raw.user === 'string' ? host.user : (alias.user ?? host.user),
    alias,
    ...(alias.hostKeyAlias ? { hostKeyAlias: alias.hostKeyAlias } : {})
  }
}

/**
 * Keys when safe-deploy.yml gives none, in OpenSSH's order: the agent (ssh.agent), each alias's IdentityFile,
 * else the default identity files (~/.ssh/id_ed25519, id_ecdsa, id_rsa). Key material read is a secret. A host
 * left without any key is a problem that lists every place looked at.
 */
function homeKeys(
  auth: SshAuth,
  hosts: ResolvedHost[],
  setting: string,
  env: NodeJS.ProcessEnv,
  home: string | undefined,
  secrets: { where: string; value: string }[]
): string[] {
  const agent = chooseAgent(setting, !!auth.privateKey, env, home)
  if (agent.problem) return [agent.problem]
  if (agent.agent) {
    auth.agent = agent.agent
    auth.agentLabel = agent.label
  }
  const looked = agent.looked ? [agent.looked] : []
  let missing = false
  for (const host of hosts) {
    if (host.kind !== 'ssh') continue
    const files = host.alias?.identityFiles ?? []
    if (home && files.length) {
      const own = firstUsableKey(home, files, auth.passphrase)
      if (own.key) {
        host.privateKey = own.key
        host.keySource = own.source
        secrets.push({ where: 'ssh.private_key', value: own.key })
        continue
      }
      looked.push(...own.looked.map(l => `IdentityFile of ${host.alias?.alias}: ${l}`))
      if (!auth.agent) missing = true
      continue
    }
    if (auth.agent || auth.privateKey) continue
    const fallback = home ? firstUsableKey(home, defaultIdentityFiles(home), auth.passphrase) : { looked: [] }
    looked.push(...fallback.looked)
    if (fallback.key) {
      auth.privateKey = fallback.key
      auth.keySource = fallback.source
      secrets.push({ where: 'ssh.private_key', value: fallback.key })
    } else missing = true
  }
  if (!missing) return []
  const base = 'ssh.private_key: required for SSH hosts (env:NAME, or ssh.private_key_file: path)'
  if (!home && !env.SSH_AUTH_SOCK) return [base]
  return [
    `${base}; looked at: ${[...new Set(looked)].join(', ')}; load your key into an agent (\`ssh-add\`), or give ssh.private_key: env:NAME`
  ]
}

/**
 * The ProxyJump of each host's ~/.ssh/config alias, one hop `[user@]host[:port]` (the hop may be an alias
 * itself: its HostName, User, Port and IdentityFile are used). Hosts behind the same bastion share one
 * JumpTarget (one connection). Several hops are a problem: ssh.jump takes one.
 */
function proxyJumps(
  hosts: ResolvedHost[],
  blocks: SshConfigBlock[],
  home: string,
  auth: SshAuth,
  secrets: { where: string; value: string }[]
): string[] {
  const problems: string[] = []
  const shared = new Map<string, JumpTarget>()
  for (const host of hosts) {
    const value = host.alias?.proxyJump
    if (!value || value.toLowerCase() === 'none') continue
    const hop = parseProxyJump(value)
    if (!hop) {
      problems.push(
        `hosts: ${host.name}: ProxyJump ${value} (~/.ssh/config): only one hop [user@]host[:port] is followed; give ssh.jump instead`
      )
      continue
    }
    const via = aliasOf(blocks, hop.address, home, { user: hop.user, port: hop.port })
    const address = via?.hostName ?? hop.address
    const port = hop.port ?? via?.port ?? 22
    const user = hop.user ?? via?.user ?? 'root'
    const id = `${user}@${address}:${port}`
    let jump = shared.get(id)
    if (!jump) {
      const own =
        via?.identityFiles.length && !isConfiguredKey(auth)
          ? firstUsableKey(home, via.identityFiles, auth.passphrase)
          : undefined
      if (own?.key) secrets.push({ where: 'ssh.jump.private_key', value: own.key })
      jump = {
        label: port === 22 ? hop.address : `${hop.address}:${port}`,
        address,
        port,
        user,
        ...(own?.key ? { privateKey: own.key, passphrase: auth.passphrase, keySource: own.source } : {})
      }
      shared.set(id, jump)
    }
    host.jump = jump
  }
  return problems
}

/** Whether the key came from safe-deploy.yml (ssh.private_key or _file), not from the home. */
const isConfiguredKey = (auth: SshAuth) => !!auth.privateKey && !auth.keySource

/**
 * The one line that says where SSH credentials come from (doctor and preflight show it): `ssh: key from the
 * SSH agent (SSH_AUTH_SOCK), host keys from ~/.ssh/known_hosts, deploy@web1 via ~/.ssh/config alias prod`.
 */
export function sshSources(loaded: Pick<LoadedConfig, 'auth' | 'hosts'>): string | undefined {
  const { auth } = loaded
  const ssh = loaded.hosts.filter(h => h.kind === 'ssh')
  if (!ssh.length) return undefined
  const keys = [
    ...new Set([
      ...(auth.agentLabel ? [auth.agentLabel] : []),
      ...ssh
        .map(h => h.keySource ?? auth.keySource ?? (auth.privateKey ? 'ssh.private_key' : undefined))
        .filter((k): k is string => !!k)
    ])
  ]
  const hostKeys = auth.insecure
    ? 'host keys NOT checked (ssh.insecure_skip_host_key_check)'
    : `host keys from ${auth.hostKeySource ?? (auth.knownHosts ? 'ssh.known_hosts' : 'ssh.fingerprints')}`
  const aliases = ssh
    .filter(h => h.alias)
    .map(
      h =>
        `${h.user}@${h.address}${h.port === 22 ? '' : `:${h.port}`} via ~/.ssh/config alias ${h.alias?.alias}${h.jump ? ` (ProxyJump ${h.jump.label})` : ''}`
    )
  return `ssh: key from ${keys.join(' and ') || 'nowhere'}, ${[hostKeys, ...aliases].join(', ')}`
}

/** ssh.jump: the bastion's own key if given (inline or file, a secret), else the hosts' key. */
function jumpTarget(
  jump: NonNullable<Config['ssh']['jump']>,
  baseDir: string,
  problems: string[],
  secrets: { where: string; value: string }[]
): JumpTarget {
  if (jump.private_key && jump.private_key_file)
    problems.push('ssh.jump: give private_key or private_key_file, not both')
  const privateKey =
    jump.private_key ?? readOptional(jump.private_key_file, 'ssh.jump.private_key_file', baseDir, problems)
  if (privateKey) secrets.push({ where: 'ssh.jump.private_key', value: privateKey })
  if (jump.passphrase) secrets.push({ where: 'ssh.jump.passphrase', value: jump.passphrase })
  if (privateKey && !/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(privateKey))
    problems.push(
      'ssh.jump.private_key: expected a PEM/OpenSSH private key (-----BEGIN ... PRIVATE KEY-----)'
    )
  if (jump.passphrase && !privateKey)
    problems.push("ssh.jump.passphrase: only with ssh.jump.private_key (the hosts' key has ssh.passphrase)")
  const label = jump.port === 22 ? jump.address : `${jump.address}:${jump.port}`
  return {
    label,
    address: jump.address,
    port: jump.port,
    user: jump.user,
    privateKey,
    passphrase: jump.passphrase
  }
}

function missingVariable(key: string, variable: string): string {
  return `${key}: environment variable ${variable} is not set or empty (referenced as env:${variable})`
}

function removeAt(root: Record<string, unknown>, path: PropertyKey[]): void {
  let node: unknown = root
  for (const part of path.slice(0, -1)) node = (node as Record<PropertyKey, unknown>)[part]
  if (node && typeof node === 'object')
    delete (node as Record<PropertyKey, unknown>)[path.at(-1) as PropertyKey]
}

/** The databases (by index) that have a value whose variable is not set, with those values. */
export function unresolvedDatabases(unresolved: readonly Unresolved[]): Map<number, Unresolved[]> {
  const out = new Map<number, Unresolved[]>()
  for (const u of unresolved) {
    const m = /^backup\.databases\[(\d+)\]\./.exec(u.key)
    if (m) out.set(Number(m[1]), [...(out.get(Number(m[1])) ?? []), u])
  }
  return out
}

/** What a command uses of the values that may be left unset at load (see LAZY_KEYS), each with why. */
export interface CommandNeeds {
  /** The config's `env:` (exported to commands on the hosts). */
  env?: string
  /** The databases' connection values (backups, restores). */
  databases?: string
  /** The age identity (decrypting a backup). */
  identity?: string
}

/** What each command uses: read-only commands (releases, status, plan, lock, backups list) need none of it. */
function commandNeeds(
  loaded: LoadedConfig,
  command: string,
  opts: { sub?: string; restore?: boolean; noDb?: boolean } = {}
): CommandNeeds {
  const c = loaded.config
  const backups = !!c.backup && c.backup.enabled
  const encrypted = backups && !!c.backup && !!c.backup.encrypt
  const env = 'its commands on the hosts get env:'
  switch (command) {
    case 'deploy':
      return {
        env,
        databases: backups ? 'it backs up the databases before anything changes' : undefined,
        // a failed migration is undone by restoring the pre-deploy backup (with rollback.database: down, when
        // the down command fails or the revision did not move): encrypted, that needs the identity
        identity:
          encrypted && c.stages.migrate && databaseRollbackMode(c) !== 'none'
            ? 'a failed migration is undone by restoring the encrypted pre-deploy backup'
            : undefined
      }
    case 'rollback':
      return {
        env,
        // --no-db leaves the database alone: no safety backup, no restore
        databases: backups && !opts.noDb ? 'it may back up or restore the databases' : undefined,
        identity: encrypted && opts.restore ? 'it restores an encrypted backup' : undefined
      }
    case 'backup':
      return { env, databases: 'it backs up the databases' }
    case 'restore':
      return {
        env,
        databases: 'it restores the databases',
        identity: encrypted ? 'it decrypts the backup' : undefined
      }
    case 'backups':
      return opts.sub === 'verify' || opts.sub === 'upload' ? { env: 'its checks on the host get env:' } : {}
    default:
      return {}
  }
}

/** Why the command uses the value at a lazy key (LAZY_KEYS), or undefined when it does not. */
function lazyReason(needs: CommandNeeds, key: string): string | undefined {
  if (key.startsWith('env.')) return needs.env
  if (key.startsWith('backup.databases[')) return needs.databases
  if (key === 'backup.encrypt.identity') return needs.identity
  return undefined
}

/**
 * The environment variables a command reads for this config, in config order: every `env:NAME` outside the
 * lazy keys (the config does not load without them), and those under lazy keys the command uses. A CI job
 * must pass exactly these (examples/workflows and `init` are checked against it).
 */
export function variablesFor(
  loaded: LoadedConfig,
  command: string,
  opts: { sub?: string; restore?: boolean; noDb?: boolean } = {}
): string[] {
  const needs = commandNeeds(loaded, command, opts)
  const used = loaded.references.filter(
    r => !LAZY_KEYS.some(re => re.test(r.key)) || lazyReason(needs, r.key)
  )
  return [...new Set(used.map(r => r.variable))]
}

/**
 * Refuses (exit 2, before anything connects) when a value the command uses names a variable that is not
 * set; the message names the key, the variable and the command. Other commands run without it.
 */
export function requireEnv(
  loaded: LoadedConfig,
  command: string,
  opts: { sub?: string; restore?: boolean; noDb?: boolean } = {}
): void {
  const needs = commandNeeds(loaded, command, opts)
  const label = opts.sub && command === 'backups' ? `${command} ${opts.sub}` : command
  const problems = loaded.unresolved.flatMap(u => {
    const reason = lazyReason(needs, u.key)
    return reason ? [`${missingVariable(u.key, u.variable)}: \`${label}\` needs it (${reason})`] : []
  })
  if (problems.length) throw configProblems(loaded.file, problems)
}

/** Shorter secrets cannot be redacted: replacing every `ab` in a log would mangle it beyond reading. */
const MIN_SECRET_LENGTH = 4

const splitList = (text: string) => [...new Set(text.split(',').map(a => a.trim()))].filter(Boolean)

/** `web-1 (10.0.0.11)` or `10.0.0.12`: how an error lists the hosts a config has. */
const knownHosts = (hosts: ResolvedHost[]) =>
  hosts.map(h => (h.kind === 'ssh' && h.name !== h.address ? `${h.name} (${h.address})` : h.name)).join(', ')

/**
 * The hosts `--hosts`/`--host` names (by name, address, or address:port) and `--roles` names (any of the roles),
 * in config order; both given: the hosts matching both. The same array when nothing selects; or why it cannot.
 */
export function selectHosts(
  hosts: ResolvedHost[],
  o: Pick<Overrides, 'host' | 'hosts' | 'roles'>
): { hosts: ResolvedHost[] } | { problem: string } {
  if (o.host !== undefined && o.hosts !== undefined)
    return { problem: '--host and --hosts: give one (--host is another name for --hosts)' }
  const flag = o.hosts !== undefined ? '--hosts' : '--host'
  const wanted = o.hosts ?? o.host
  let picked = hosts
  if (wanted !== undefined) {
    const asked = splitList(wanted)
    if (!asked.length) return { problem: `${flag}: expected a host name or address from the config` }
    const matches = (h: ResolvedHost, a: string) =>
      h.name === a || (h.kind === 'ssh' && (h.address === a || `${h.address}:${h.port}` === a))
    const unknown = asked.filter(a => !hosts.some(h => matches(h, a)))
    if (unknown.length) {
      return {
        problem: `${flag}: ${unknown.map(u => JSON.stringify(u)).join(', ')} ${unknown.length > 1 ? 'are' : 'is'} not a host of this config; it has ${knownHosts(hosts)} (add a host to hosts: to deploy to it)`
      }
    }
    picked = hosts.filter(h => asked.some(a => matches(h, a)))
  }
  if (o.roles !== undefined) {
    const asked = splitList(o.roles)
    const known = [...new Set(hosts.flatMap(h => h.roles))]
    if (!asked.length) return { problem: "--roles: expected a role from the config's hosts[].roles" }
    const unknown = asked.filter(r => !known.includes(r))
    if (unknown.length) {
      return {
        problem: `--roles: ${unknown.map(u => JSON.stringify(u)).join(', ')} ${unknown.length > 1 ? 'are' : 'is'} not a role of any host of this config; ${known.length ? `the roles are ${known.join(', ')}` : 'no host has roles (hosts[].roles)'}`
      }
    }
    const byRole = picked.filter(h => h.roles.some(r => asked.includes(r)))
    if (!byRole.length)
      return {
        problem: `--hosts and --roles: no host is both in ${JSON.stringify(wanted)} and has a role of ${asked.join(', ')}; the hosts with those roles are ${knownHosts(hosts.filter(h => h.roles.some(r => asked.includes(r))))}`
      }
    picked = byRole
  }
  return { hosts: picked }
}

/** The key a backup secret (a password, a URL, the identity) came from. */
function backupSecretKey(config: Config, value: string): string {
  if (config.backup && config.backup.encrypt?.identity === value) return 'backup.encrypt.identity'
  const dbs = config.backup ? config.backup.databases : []
  const i = dbs.findIndex(db => databaseSecrets(db).includes(value))
  return `backup.databases[${i}].${dbs[i]?.password === value ? 'password' : 'url'}`
}

/** A secret too short to redact is refused, by key, rather than printed in clear. */
function shortSecretProblems(secrets: { where: string; value: string; name?: string }[]): string[] {
  const problems = new Map<string, string>()
  for (const s of secrets) {
    if (s.value.length >= MIN_SECRET_LENGTH || problems.has(s.where)) continue
    const what = s.name ? `the value of env:${s.name}` : 'the secret'
    problems.set(
      s.where,
      `${s.where}: ${what} is ${s.value.length} character${s.value.length === 1 ? '' : 's'} long; secrets are redacted (***) in every log and report, and one under ${MIN_SECRET_LENGTH} characters cannot be without mangling them: use a longer secret${s.name ? ', or write the value in the config if it is not secret' : ''}`
    )
  }
  return [...problems.values()]
}

function readOptional(file: string | undefined, key: string, baseDir: string, problems: string[]) {
  return file === undefined ? undefined : readTextFile(file, key, baseDir, problems)
}

function configProblems(file: string, problems: string[]): ConfigError {
  const list = problems.map(p => `  - ${p}`).join('\n')
  return new ConfigError(`invalid config ${file}:\n${list}`, problems)
}
