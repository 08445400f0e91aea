/**
 * Host key checking for SSH connections: parses OpenSSH known_hosts text, matches entries against the
 * host being contacted with OpenSSH semantics, and builds the `hostVerifier` / `algorithms.serverHostKey`
 * values that ssh2 takes. Verification never fails open: with nothing to check against, every key is
 * rejected.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

/** One key line of a known_hosts file. */
export interface KnownHostEntry {
  /** 1-based line number in the text the entry came from. */
  line: number
  marker?: 'cert-authority' | 'revoked'
  /** The host field as written: a comma-separated pattern list or a hashed `|1|salt|hash` entry. */
  hosts: string
  keyType: string
  keyBase64: string
}

export type HostKeyFailureReason = 'mismatch' | 'unknown-host' | 'revoked'

/** Why a server's host key was rejected; the message says what to do next. */
export class HostKeyError extends Error {
  readonly address: string
  readonly port: number
  readonly offeredType: string
  readonly offeredFingerprint: string
  readonly reason: HostKeyFailureReason

  constructor(
    message: string,
    fields: {
      address: string
      port: number
      offeredType: string
      offeredFingerprint: string
      reason: HostKeyFailureReason
    }
  ) {
    super(message)
    this.name = 'HostKeyError'
    this.address = fields.address
    this.port = fields.port
    this.offeredType = fields.offeredType
    this.offeredFingerprint = fields.offeredFingerprint
    this.reason = fields.reason
  }
}

const HASH_MAGIC = '|1|'
const SHA1_LENGTH = 20
const BASE64_RE = /^[A-Za-z0-9+/]+={0,2}$/
const KEY_TYPE_NAME_RE = /^[\x21-\x7e]+$/
/** Longest key type name we accept in a blob (OpenSSH names are well under this). */
const MAX_KEY_TYPE_LENGTH = 256

function isBase64(text: string): boolean {
  return text.length % 4 === 0 && BASE64_RE.test(text)
}

/**
 * Parses known_hosts text. Blank lines and `#` comments are skipped; a malformed line throws an Error
 * that names the line and what is wrong with it.
 */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = []
  const lines = text.split(/\r?\n/)
  lines.forEach((raw, index) => {
    const line = index + 1
    const trimmed = raw.trim()
    if (trimmed === '' || trimmed.startsWith('#')) return
    const fail = (what: string): never => {
      throw new Error(`known_hosts line ${line}: ${what}`)
    }
    const fields = trimmed.split(/[ \t]+/)
    let marker: KnownHostEntry['marker']
    if (fields[0]?.startsWith('@')) {
      const name = fields.shift()
      if (name === '@cert-authority') marker = 'cert-authority'
      else if (name === '@revoked') marker = 'revoked'
      else fail(`unknown marker "${name}" (expected @cert-authority or @revoked)`)
    }
    const [hosts, keyType, keyBase64] = fields
    if (hosts === undefined) return fail('marker without a host pattern, key type and key')
    if (keyType === undefined) return fail(`missing key type and key after "${hosts}"`)
    if (keyBase64 === undefined) return fail(`missing base64 key after key type "${keyType}"`)
    if (hosts.startsWith('|')) {
      const problem = hashedHostProblem(hosts)
      if (problem !== undefined) fail(problem)
    } else {
      const problem = patternListProblem(hosts)
      if (problem !== undefined) fail(problem)
    }
    if (!isBase64(keyBase64)) fail(`the key for "${keyType}" is not valid base64`)
    let blobType: string
    try {
      blobType = keyTypeOf(Buffer.from(keyBase64, 'base64'))
    } catch (error) {
      return fail(`the key is not an SSH public key (${(error as Error).message})`)
    }
    if (blobType !== keyType) fail(`key type "${keyType}" does not match the key, which is a ${blobType} key`)
    const entry: KnownHostEntry = { line, hosts, keyType, keyBase64 }
    if (marker !== undefined) entry.marker = marker
    entries.push(entry)
  })
  return entries
}

function hashedHostProblem(hosts: string): string | undefined {
  if (!hosts.startsWith(HASH_MAGIC)) {
    return `unsupported hashed host "${hosts}" (expected |1|salt|hash)`
  }
  const parts = hosts.slice(HASH_MAGIC.length).split('|')
  if (parts.length !== 2) return `malformed hashed host "${hosts}" (expected |1|salt|hash)`
  for (const [name, value] of [
    ['salt', parts[0] ?? ''],
    ['hash', parts[1] ?? '']
  ] as const) {
    if (!isBase64(value) || Buffer.from(value, 'base64').length !== SHA1_LENGTH) {
      return `malformed hashed host "${hosts}": the ${name} is not ${SHA1_LENGTH} bytes of base64`
    }
  }
  return undefined
}

function patternListProblem(hosts: string): string | undefined {
  for (const pattern of hosts.split(',')) {
    const body = pattern.startsWith('!') ? pattern.slice(1) : pattern
    if (body === '') return `empty host pattern in "${hosts}"`
  }
  return undefined
}

/** The host string OpenSSH looks up: `host` for port 22, `[host]:port` otherwise. */
function hostString(address: string, port: number): string {
  const host = address.toLowerCase()
  return port === 22 ? host : `[${host}]:${port}`
}

/** OpenSSH glob: `*` matches any run of characters, `?` exactly one; case-insensitive. */
export function globMatch(text: string, pattern: string): boolean {
  const s = text.toLowerCase()
  const p = pattern.toLowerCase()
  let si = 0
  let pi = 0
  let starP = -1
  let starS = 0
  while (si < s.length) {
    if (pi < p.length && (p[pi] === '?' || p[pi] === s[si])) {
      si++
      pi++
    } else if (pi < p.length && p[pi] === '*') {
      starP = pi++
      starS = si
    } else if (starP !== -1) {
      pi = starP + 1
      si = ++starS
    } else {
      return false
    }
  }
  while (pi < p.length && p[pi] === '*') pi++
  return pi === p.length
}

function hashedMatch(hosts: string, host: string): boolean {
  const [salt = '', hash = ''] = hosts.slice(HASH_MAGIC.length).split('|')
  const expected = Buffer.from(hash, 'base64')
  const actual = createHmac('sha1', Buffer.from(salt, 'base64')).update(host).digest()
  return expected.length === actual.length && timingSafeEqual(expected, actual)
}

/**
 * Whether `entry` applies to `address` at `port`, as OpenSSH decides it: the host string is `address`
 * for port 22 and `[address]:port` otherwise; a matching negated pattern (`!pattern`) excludes the host
 * whatever else matches; hashed entries compare HMAC-SHA1(salt, host string).
 */
export function matchesHost(entry: KnownHostEntry, address: string, port: number): boolean {
  const host = hostString(address, port)
  if (entry.hosts.startsWith('|')) {
    return entry.hosts.startsWith(HASH_MAGIC) && hashedMatch(entry.hosts, host)
  }
  let positive = false
  for (const pattern of entry.hosts.split(',')) {
    if (pattern.startsWith('!')) {
      if (globMatch(host, pattern.slice(1))) return false
    } else if (globMatch(host, pattern)) {
      positive = true
    }
  }
  return positive
}

/** The key type name at the start of an SSH wire-format public key blob. Throws on a malformed blob. */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) throw new Error(`key blob is too short (${blob.length} bytes)`)
  const length = blob.readUInt32BE(0)
  if (length === 0) throw new Error('key blob has an empty key type name')
  if (length > MAX_KEY_TYPE_LENGTH || 4 + length > blob.length) {
    throw new Error(`key blob's type name length ${length} does not fit in its ${blob.length} bytes`)
  }
  const name = blob.toString('latin1', 4, 4 + length)
  if (!KEY_TYPE_NAME_RE.test(name)) throw new Error('key blob has a key type name that is not printable')
  if (4 + length === blob.length) throw new Error(`key blob has a type name (${name}) but no key`)
  return name
}

/** `SHA256:` + unpadded base64 of sha256(blob), as `ssh-keygen -lf` prints it. */
export function fingerprintOf(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')
}

/** ssh2 `serverHostKey` algorithm names for each known_hosts key type it can verify. */
const ALGORITHMS_BY_KEY_TYPE: Record<string, readonly string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
  'ssh-dss': ['ssh-dss']
}

/** Entries that can vouch for a key: not revoked, not a certificate authority. */
function isPlain(entry: KnownHostEntry): boolean {
  return entry.marker === undefined
}

/**
 * The ssh2 host key algorithms to ask the server for, so that it offers a key known_hosts can verify:
 * the key types of the matching plain entries in file order, de-duplicated. Key types ssh2 cannot
 * negotiate (security keys, certificates) are left out. Empty when nothing matches.
 */
export function hostKeyAlgorithmsFor(entries: KnownHostEntry[], address: string, port: number): string[] {
  const algorithms: string[] = []
  for (const entry of entries) {
    if (!isPlain(entry) || !matchesHost(entry, address, port)) continue
    for (const algorithm of ALGORITHMS_BY_KEY_TYPE[entry.keyType] ?? []) {
      if (!algorithms.includes(algorithm)) algorithms.push(algorithm)
    }
  }
  return algorithms
}

/** `ssh-keyscan -t` names. */
function keyscanType(keyType: string): string | undefined {
  if (keyType === 'ssh-ed25519') return 'ed25519'
  if (keyType.startsWith('ecdsa-sha2-')) return 'ecdsa'
  if (keyType === 'ssh-rsa') return 'rsa'
  if (keyType === 'ssh-dss') return 'dsa'
  return undefined
}

function keyscanCommand(address: string, port: number, keyType?: string): string {
  const parts = ['ssh-keyscan']
  if (port !== 22) parts.push('-p', String(port))
  const type = keyType === undefined ? undefined : keyscanType(keyType)
  if (type !== undefined) parts.push('-t', type)
  parts.push(address)
  return parts.join(' ')
}

/** Normalises a configured fingerprint to the bare unpadded base64 of the SHA-256 digest. */
function normaliseFingerprint(fingerprint: string): string {
  const bare = fingerprint
    .trim()
    .replace(/^sha256:/i, '')
    .replace(/=+$/, '')
  if (!/^[A-Za-z0-9+/]{43}$/.test(bare)) {
    throw new Error(
      `host key fingerprint "${fingerprint}" is not a SHA256 fingerprint ` +
        '(expected SHA256: and 43 base64 characters, as printed by ssh-keygen -lf)'
    )
  }
  return bare
}

export interface HostVerifierOptions {
  address: string
  port: number
  /** known_hosts text; parsed eagerly, so a malformed line throws here. */
  knownHosts?: string
  /** Accepted SHA256 fingerprints (`SHA256:` prefix and `=` padding optional). */
  fingerprints?: string[]
}

export interface HostVerifier {
  /** For ssh2's `hostVerifier`: true accepts the raw host key blob, false rejects it. Never throws. */
  verify: (key: Buffer) => boolean
  /** Why the last `verify` call rejected, or undefined if it accepted (or was not called). */
  failure: () => HostKeyError | undefined
  /** For ssh2's `algorithms.serverHostKey`; empty when known_hosts has no entry for the host. */
  algorithms: string[]
}

/**
 * Builds the host key check for one host. A key is accepted when it equals the key of a matching
 * known_hosts entry or its fingerprint is one of `fingerprints`, unless a matching `@revoked` entry
 * lists it. Without knownHosts and fingerprints every key is rejected.
 */
export function createHostVerifier(opts: HostVerifierOptions): HostVerifier {
  const { address, port } = opts
  const entries = opts.knownHosts === undefined ? [] : parseKnownHosts(opts.knownHosts)
  const matching = entries.filter(entry => matchesHost(entry, address, port))
  const known = matching
    .filter(isPlain)
    .map(entry => ({ entry, blob: Buffer.from(entry.keyBase64, 'base64') }))
  const revoked = matching
    .filter(entry => entry.marker === 'revoked')
    .map(entry => ({ entry, blob: Buffer.from(entry.keyBase64, 'base64') }))
  const authorities = matching.filter(entry => entry.marker === 'cert-authority')
  const fingerprints = new Set((opts.fingerprints ?? []).map(normaliseFingerprint))
  const algorithms = hostKeyAlgorithmsFor(entries, address, port)

  const label = `${address.includes(':') ? `[${address}]` : address}:${port}`
  const lookedUp = port === 22 ? address : `[${address}]:${port}`
  const nothingConfigured = opts.knownHosts === undefined && fingerprints.size === 0
  let lastFailure: HostKeyError | undefined

  const describe = (
    reason: HostKeyFailureReason,
    offered: string,
    offeredType: string,
    revokedLine?: number
  ): string => {
    if (reason === 'revoked') {
      return (
        `host key for ${label} is marked @revoked in known_hosts (line ${revokedLine}): ${offered}; ` +
        'do not connect until the server has a new host key, then check it out of band and add it to known_hosts'
      )
    }
    if (reason === 'mismatch') {
      const sameType = known.find(({ entry }) => entry.keyType === offeredType)
      if (sameType === undefined && known.length > 0) {
        // known_hosts has this host, but only keys of other types (RSA there, ed25519 on the server)
        const types = [...new Set(known.map(({ entry }) => entry.keyType))].join(', ')
        const lines = known.map(({ entry }) => entry.line).join(', ')
        return (
          `host key for ${label} cannot be checked: ${offered}, and known_hosts has only ` +
          `${types} for this host (line${known.length > 1 ? 's' : ''} ${lines}); ` +
          `run \`${keyscanCommand(address, port, offeredType)}\`, check the key out of band and add it to known_hosts`
        )
      }
      if (sameType !== undefined) {
        return (
          `host key for ${label} does not match known_hosts (line ${sameType.entry.line}): ${offered}; ` +
          `if the server was reinstalled, run \`${keyscanCommand(address, port, offeredType)}\` ` +
          'and compare before updating known_hosts'
        )
      }
      return (
        `host key for ${label} does not match the configured fingerprints: ${offered}; ` +
        `if the server was reinstalled, run \`${keyscanCommand(address, port, offeredType)} | ssh-keygen -lf -\` ` +
        'and compare before updating the fingerprints'
      )
    }
    const what = nothingConfigured
      ? `no known_hosts or host key fingerprints configured for ${lookedUp}`
      : `no known_hosts entry for ${lookedUp}`
    const caNote =
      authorities.length > 0
        ? ' (@cert-authority entries are not used: host certificates are not supported)'
        : ''
    return (
      `${what}${caNote}; ${offered}; ` +
      `add the output of \`${keyscanCommand(address, port)}\` (checked out of band) to known_hosts`
    )
  }

  const verify = (key: Buffer): boolean => {
    try {
      const offeredFingerprint = fingerprintOf(key)
      let offeredType: string
      try {
        offeredType = keyTypeOf(key)
      } catch {
        offeredType = 'malformed-key'
      }
      const reject = (reason: HostKeyFailureReason, revokedLine?: number): false => {
        const offered = `the server offered ${offeredType} ${offeredFingerprint}`
        lastFailure = new HostKeyError(describe(reason, offered, offeredType, revokedLine), {
          address,
          port,
          offeredType,
          offeredFingerprint,
          reason
        })
        return false
      }
      const revokedEntry = revoked.find(({ blob }) => blob.equals(key))
      if (revokedEntry !== undefined) return reject('revoked', revokedEntry.entry.line)
      const offeredBare = offeredFingerprint.slice('SHA256:'.length)
      if (known.some(({ blob }) => blob.equals(key)) || fingerprints.has(offeredBare)) {
        lastFailure = undefined
        return true
      }
      return reject(known.length > 0 || fingerprints.size > 0 ? 'mismatch' : 'unknown-host')
    } catch (error) {
      // ssh2 calls this mid-handshake: never throw, never accept on an unexpected error.
      lastFailure = new HostKeyError(
        `host key for ${label} could not be checked: ${(error as Error).message}`,
        {
          address,
          port,
          offeredType: 'unknown',
          offeredFingerprint: 'unknown',
          reason: 'mismatch'
        }
      )
      return false
    }
  }

  return { verify, failure: () => lastFailure, algorithms }
}
