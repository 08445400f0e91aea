import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import {
  createHostVerifier,
  fingerprintOf,
  hostKeyAlgorithmsFor,
  HostKeyError,
  keyTypeOf,
  matchesHost,
  parseKnownHosts,
  type KnownHostEntry
} from '../../../src/transport/hostkeys.js'

const SSH_KEYGEN = '/usr/bin/ssh-keygen'

interface TestKey {
  pubPath: string
  keyType: string
  keyBase64: string
  blob: Buffer
}

let dir: string
const keys: Record<'ed25519' | 'ed25519b' | 'ecdsa' | 'ecdsa384' | 'ecdsa521' | 'rsa', TestKey> = {} as never

function generate(name: string, args: string[]): TestKey {
  const path = join(dir, name)
  execFileSync(SSH_KEYGEN, ['-q', ...args, '-N', '', '-C', `test-${name}`, '-f', path], { stdio: 'pipe' })
  const pubPath = `${path}.pub`
  const [keyType = '', keyBase64 = ''] = readFileSync(pubPath, 'utf8').trim().split(' ')
  return { pubPath, keyType, keyBase64, blob: Buffer.from(keyBase64, 'base64') }
}

/** A known_hosts line for `hosts` and `key`. */
function line(hosts: string, key: TestKey, marker?: string): string {
  return [marker, hosts, key.keyType, key.keyBase64].filter(Boolean).join(' ')
}

/** Runs `ssh-keygen -H` over `text` and returns the hashed file. */
function hashWithSshKeygen(text: string): string {
  const path = join(dir, `hash-${Math.random().toString(36).slice(2)}`)
  writeFileSync(path, text)
  execFileSync(SSH_KEYGEN, ['-H', '-f', path], { stdio: 'pipe' })
  return readFileSync(path, 'utf8')
}

/** Whether OpenSSH itself (`ssh-keygen -F`) finds `host` in `text`. */
function sshKeygenFinds(text: string, host: string): boolean {
  const path = join(dir, `find-${Math.random().toString(36).slice(2)}`)
  writeFileSync(path, text)
  const result = spawnSync(SSH_KEYGEN, ['-F', host, '-f', path], { encoding: 'utf8' })
  if (result.status !== 0 && result.status !== 1) throw new Error(`ssh-keygen -F failed: ${result.stderr}`)
  return result.status === 0 && result.stdout.includes('found')
}

function only(text: string): KnownHostEntry {
  const entries = parseKnownHosts(text)
  expect(entries).toHaveLength(1)
  return entries[0] as KnownHostEntry
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hostkeys-test-'))
  keys.ed25519 = generate('ed25519', ['-t', 'ed25519'])
  keys.ed25519b = generate('ed25519b', ['-t', 'ed25519'])
  keys.ecdsa = generate('ecdsa', ['-t', 'ecdsa'])
  keys.ecdsa384 = generate('ecdsa384', ['-t', 'ecdsa', '-b', '384'])
  keys.ecdsa521 = generate('ecdsa521', ['-t', 'ecdsa', '-b', '521'])
  keys.rsa = generate('rsa', ['-t', 'rsa', '-b', '2048'])
})

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('parseKnownHosts', () => {
  test('skips blank lines and comments, keeps 1-based line numbers, markers and trailing comments', () => {
    const text = [
      '# known hosts for the test',
      '',
      `  ${line('web-1,10.0.0.1', keys.ed25519)} a comment with spaces`,
      '   ',
      '\t# indented comment',
      line('[10.0.0.2]:2222', keys.rsa),
      line('*', keys.ecdsa, '@cert-authority'),
      line('10.0.0.3', keys.ed25519b, '@revoked') + '\r',
      ''
    ].join('\n')
    expect(parseKnownHosts(text)).toEqual([
      { line: 3, hosts: 'web-1,10.0.0.1', keyType: 'ssh-ed25519', keyBase64: keys.ed25519.keyBase64 },
      { line: 6, hosts: '[10.0.0.2]:2222', keyType: 'ssh-rsa', keyBase64: keys.rsa.keyBase64 },
      {
        line: 7,
        marker: 'cert-authority',
        hosts: '*',
        keyType: 'ecdsa-sha2-nistp256',
        keyBase64: keys.ecdsa.keyBase64
      },
      {
        line: 8,
        marker: 'revoked',
        hosts: '10.0.0.3',
        keyType: 'ssh-ed25519',
        keyBase64: keys.ed25519b.keyBase64
      }
    ])
  })

  test('parses the hashed lines ssh-keygen -H writes', () => {
    const hashed = hashWithSshKeygen(line('127.0.0.2', keys.ed25519) + '\n')
    const entry = only(hashed)
    expect(entry.hosts).toMatch(/^\|1\|[A-Za-z0-9+/]{27}=\|[A-Za-z0-9+/]{27}=$/)
    expect(entry.keyBase64).toBe(keys.ed25519.keyBase64)
  })

  test.each([
    ['web-1', 'missing key type'],
    ['web-1 ssh-ed25519', 'missing base64 key'],
    ['@revoked', 'marker without a host'],
    ['@trusted web-1 ssh-ed25519 AAAA', 'unknown marker "@trusted"'],
    ['web-1 ssh-ed25519 not*base64', 'not valid base64'],
    ['web-1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5', 'not an SSH public key'],
    ['web-1,,web-2 KEY', 'empty host pattern'],
    ['web-1,! KEY', 'empty host pattern'],
    ['|1|c2FsdA==|aGFzaA== KEY', 'the salt is not 20 bytes'],
    ['|1|onlysalt KEY', 'malformed hashed host'],
    ['|2|AAAA|AAAA KEY', 'unsupported hashed host']
  ])('a malformed line (%s) throws naming line 3 and the problem', (bad, problem) => {
    const badLine = bad.replace('KEY', `${keys.ed25519.keyType} ${keys.ed25519.keyBase64}`)
    const text = ['# header', line('ok', keys.ed25519), badLine, line('ok-2', keys.rsa)].join('\n')
    expect(() => parseKnownHosts(text)).toThrow(/^known_hosts line 3: /)
    expect(() => parseKnownHosts(text)).toThrow(problem)
  })

  test('a key type that does not match the key is an error naming the line', () => {
    const text = `\n\nweb-1 ssh-rsa ${keys.ed25519.keyBase64}\n`
    expect(() => parseKnownHosts(text)).toThrow(
      'known_hosts line 3: key type "ssh-rsa" does not match the key, which is a ssh-ed25519 key'
    )
  })
})

describe('matchesHost', () => {
  test('a plain host matches the address at port 22 only', () => {
    const entry = only(line('127.0.0.2', keys.ed25519))
    expect(matchesHost(entry, '127.0.0.2', 22)).toBe(true)
    expect(matchesHost(entry, '127.0.0.2', 2222)).toBe(false)
    expect(matchesHost(entry, '127.0.0.20', 22)).toBe(false)
    expect(matchesHost(entry, '127.0.0.', 22)).toBe(false)
  })

  test('[host]:port matches that port only, and host names compare case-insensitively', () => {
    const entry = only(line('[Web-1.Example.com]:2222', keys.ed25519))
    expect(matchesHost(entry, 'web-1.example.com', 2222)).toBe(true)
    expect(matchesHost(entry, 'WEB-1.example.com', 2222)).toBe(true)
    expect(matchesHost(entry, 'web-1.example.com', 22)).toBe(false)
    expect(matchesHost(entry, 'web-1.example.com', 2223)).toBe(false)
    expect(matchesHost(only(line('[web-1]:22', keys.ed25519)), 'web-1', 22)).toBe(false)
  })

  test('hashed entries from ssh-keygen -H match by HMAC, port included', () => {
    const hashed = parseKnownHosts(
      hashWithSshKeygen(
        [line('127.0.0.2', keys.ed25519), line('[127.0.0.2]:2222', keys.rsa)].join('\n') + '\n'
      )
    )
    const [port22, port2222] = hashed as [KnownHostEntry, KnownHostEntry]
    expect(port22.hosts.startsWith('|1|')).toBe(true)
    expect(matchesHost(port22, '127.0.0.2', 22)).toBe(true)
    expect(matchesHost(port22, '127.0.0.2', 2222)).toBe(false)
    expect(matchesHost(port22, '127.0.0.3', 22)).toBe(false)
    expect(matchesHost(port2222, '127.0.0.2', 2222)).toBe(true)
    expect(matchesHost(port2222, '127.0.0.2', 22)).toBe(false)
    expect(matchesHost(port2222, '127.0.0.2', 2223)).toBe(false)
  })

  test('wildcards * and ? follow OpenSSH glob rules', () => {
    const star = only(line('*.example.com', keys.ed25519))
    expect(matchesHost(star, 'web-1.example.com', 22)).toBe(true)
    expect(matchesHost(star, 'a.b.example.com', 22)).toBe(true)
    expect(matchesHost(star, 'example.com', 22)).toBe(false)
    expect(matchesHost(star, 'web-1.example.com.evil', 22)).toBe(false)
    const question = only(line('10.0.0.?', keys.ed25519))
    expect(matchesHost(question, '10.0.0.7', 22)).toBe(true)
    expect(matchesHost(question, '10.0.0.17', 22)).toBe(false)
    const portWildcard = only(line('[10.0.0.*]:2222', keys.ed25519))
    expect(matchesHost(portWildcard, '10.0.0.42', 2222)).toBe(true)
    expect(matchesHost(portWildcard, '10.0.0.42', 22)).toBe(false)
    expect(matchesHost(only(line('*', keys.ed25519)), 'anything', 2222)).toBe(true)
  })

  test('a matching negated pattern wins over any positive match', () => {
    const entry = only(line('*.example.com,!db.example.com', keys.ed25519))
    expect(matchesHost(entry, 'web.example.com', 22)).toBe(true)
    expect(matchesHost(entry, 'db.example.com', 22)).toBe(false)
    const negFirst = only(line('!10.0.0.5,10.0.0.*', keys.ed25519))
    expect(matchesHost(negFirst, '10.0.0.5', 22)).toBe(false)
    expect(matchesHost(negFirst, '10.0.0.6', 22)).toBe(true)
    expect(matchesHost(only(line('!10.0.0.5', keys.ed25519)), '10.0.0.6', 22)).toBe(false)
  })

  test('any pattern of a comma list can match', () => {
    const entry = only(line('web-1,10.0.0.1,[10.0.0.1]:2222', keys.ed25519))
    expect(matchesHost(entry, 'web-1', 22)).toBe(true)
    expect(matchesHost(entry, '10.0.0.1', 22)).toBe(true)
    expect(matchesHost(entry, '10.0.0.1', 2222)).toBe(true)
    expect(matchesHost(entry, 'web-1', 2222)).toBe(false)
    expect(matchesHost(entry, 'web-2', 22)).toBe(false)
  })

  test('agrees with ssh-keygen -F on plain, port, wildcard, negated and hashed entries', () => {
    const hostFields = [
      '127.0.0.2',
      '[127.0.0.2]:2222',
      '*.example.com,!db.example.com',
      '10.0.0.?',
      '[10.0.*.1]:2200',
      'a,b,[c]:23'
    ]
    const probes: [string, number][] = [
      ['127.0.0.2', 22],
      ['127.0.0.2', 2222],
      ['web.example.com', 22],
      ['db.example.com', 22],
      ['web.example.com', 2222],
      ['10.0.0.9', 22],
      ['10.0.0.19', 22],
      ['10.0.7.1', 2200],
      ['10.0.7.1', 22],
      ['b', 22],
      ['c', 23],
      ['c', 22]
    ]
    let agreedMatches = 0
    for (const hosts of hostFields) {
      const plain = line(hosts, keys.ed25519) + '\n'
      const entry = only(plain)
      const hashedText = hosts.includes('*') || hosts.includes('?') || hosts.includes(',') ? undefined : plain
      const hashed = hashedText === undefined ? undefined : only(hashWithSshKeygen(hashedText))
      for (const [address, port] of probes) {
        const lookup = port === 22 ? address : `[${address}]:${port}`
        const expected = sshKeygenFinds(plain, lookup)
        expect({ hosts, lookup, matches: matchesHost(entry, address, port) }).toEqual({
          hosts,
          lookup,
          matches: expected
        })
        if (hashed !== undefined) {
          expect({ hosts, lookup, hashed: matchesHost(hashed, address, port) }).toEqual({
            hosts,
            lookup,
            hashed: expected
          })
        }
        if (expected) agreedMatches++
      }
    }
    // The oracle must have said yes sometimes, or this test proves nothing.
    expect(agreedMatches).toBe(7)
  })
})

describe('keyTypeOf and fingerprintOf', () => {
  test('keyTypeOf reads the type name of real keys', () => {
    expect(keyTypeOf(keys.ed25519.blob)).toBe('ssh-ed25519')
    expect(keyTypeOf(keys.ecdsa.blob)).toBe('ecdsa-sha2-nistp256')
    expect(keyTypeOf(keys.ecdsa384.blob)).toBe('ecdsa-sha2-nistp384')
    expect(keyTypeOf(keys.ecdsa521.blob)).toBe('ecdsa-sha2-nistp521')
    expect(keyTypeOf(keys.rsa.blob)).toBe('ssh-rsa')
  })

  test('keyTypeOf throws on malformed blobs', () => {
    expect(() => keyTypeOf(Buffer.alloc(0))).toThrow(/too short/)
    expect(() => keyTypeOf(Buffer.from([0, 0, 0]))).toThrow(/too short/)
    expect(() => keyTypeOf(Buffer.from([0, 0, 0, 0, 1, 2]))).toThrow(/empty key type/)
    expect(() => keyTypeOf(keys.ed25519.blob.subarray(0, 10))).toThrow(/does not fit/)
    expect(() => keyTypeOf(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x61]))).toThrow(/does not fit/)
    expect(() => keyTypeOf(keys.ed25519.blob.subarray(0, 4 + 'ssh-ed25519'.length))).toThrow(/no key/)
    expect(() => keyTypeOf(Buffer.from([0, 0, 0, 2, 0x61, 0x0a, 1]))).toThrow(/not printable/)
  })

  test.each(['ed25519', 'ecdsa', 'ecdsa384', 'ecdsa521', 'rsa'] as const)(
    'fingerprintOf(%s) equals what ssh-keygen -lf prints',
    name => {
      const key = keys[name]
      const printed = execFileSync(SSH_KEYGEN, ['-lf', key.pubPath], { encoding: 'utf8' })
      const expected = printed.split(' ')[1]
      expect(expected).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/)
      expect(fingerprintOf(key.blob)).toBe(expected)
    }
  )
})

describe('hostKeyAlgorithmsFor', () => {
  test('maps key types to ssh2 algorithm names in file order, de-duplicated', () => {
    const entries = parseKnownHosts(
      [
        line('127.0.0.2', keys.rsa),
        line('127.0.0.2', keys.ed25519),
        line('127.0.0.2', keys.ed25519b),
        line('*', keys.ecdsa),
        line('127.0.0.*', keys.ecdsa384),
        line('127.0.0.2', keys.ecdsa521)
      ].join('\n')
    )
    expect(hostKeyAlgorithmsFor(entries, '127.0.0.2', 22)).toEqual([
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
      'ssh-ed25519',
      'ecdsa-sha2-nistp256',
      'ecdsa-sha2-nistp384',
      'ecdsa-sha2-nistp521'
    ])
  })

  test('rsa, ed25519 and ecdsa hosts each get their own algorithms', () => {
    const entries = parseKnownHosts(
      [line('rsa-host', keys.rsa), line('ed-host', keys.ed25519), line('[ec-host]:2222', keys.ecdsa)].join(
        '\n'
      )
    )
    expect(hostKeyAlgorithmsFor(entries, 'rsa-host', 22)).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'])
    expect(hostKeyAlgorithmsFor(entries, 'ed-host', 22)).toEqual(['ssh-ed25519'])
    expect(hostKeyAlgorithmsFor(entries, 'ec-host', 2222)).toEqual(['ecdsa-sha2-nistp256'])
    expect(hostKeyAlgorithmsFor(entries, 'ec-host', 22)).toEqual([])
  })

  test('leaves out revoked and cert-authority entries; empty when nothing matches', () => {
    const entries = parseKnownHosts(
      [
        line('web', keys.rsa, '@revoked'),
        line('*', keys.ecdsa, '@cert-authority'),
        line('web', keys.ed25519)
      ].join('\n')
    )
    expect(hostKeyAlgorithmsFor(entries, 'web', 22)).toEqual(['ssh-ed25519'])
    expect(hostKeyAlgorithmsFor(entries, 'other', 22)).toEqual([])
    expect(hostKeyAlgorithmsFor([], 'web', 22)).toEqual([])
  })
})

describe('createHostVerifier', () => {
  test('accepts the key of a matching known_hosts entry, plain or hashed', () => {
    const plain = [line('10.9.9.9', keys.rsa), line('[127.0.0.2]:2222', keys.ed25519)].join('\n') + '\n'
    for (const knownHosts of [plain, hashWithSshKeygen(plain)]) {
      const verifier = createHostVerifier({ address: '127.0.0.2', port: 2222, knownHosts })
      expect(verifier.verify(keys.ed25519.blob)).toBe(true)
      expect(verifier.failure()).toBeUndefined()
      expect(verifier.algorithms).toEqual(['ssh-ed25519'])
    }
  })

  test('a different key for a known host is a mismatch naming the line, offered key and ssh-keyscan', () => {
    const knownHosts = ['# servers', '', line('[127.0.0.2]:2222', keys.ed25519)].join('\n')
    const verifier = createHostVerifier({ address: '127.0.0.2', port: 2222, knownHosts })
    expect(verifier.verify(keys.ed25519b.blob)).toBe(false)
    const failure = verifier.failure()
    expect(failure).toBeInstanceOf(HostKeyError)
    expect(failure).toMatchObject({
      name: 'HostKeyError',
      reason: 'mismatch',
      address: '127.0.0.2',
      port: 2222,
      offeredType: 'ssh-ed25519',
      offeredFingerprint: fingerprintOf(keys.ed25519b.blob)
    })
    expect(failure?.message).toBe(
      'host key for 127.0.0.2:2222 does not match known_hosts (line 3): the server offered ssh-ed25519 ' +
        `${fingerprintOf(keys.ed25519b.blob)}; if the server was reinstalled, run ` +
        '`ssh-keyscan -p 2222 -t ed25519 127.0.0.2` and compare before updating known_hosts'
    )
  })

  test('a key of a type known_hosts has none of for the host says so, with the offered key and ssh-keyscan', () => {
    const knownHosts = [line('[127.0.0.2]:2222', keys.rsa), line('10.9.9.9', keys.ed25519)].join('\n')
    const verifier = createHostVerifier({ address: '127.0.0.2', port: 2222, knownHosts })
    expect(verifier.algorithms).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'])
    expect(verifier.verify(keys.ed25519.blob)).toBe(false)
    expect(verifier.failure()).toMatchObject({
      reason: 'mismatch',
      offeredType: 'ssh-ed25519',
      offeredFingerprint: fingerprintOf(keys.ed25519.blob)
    })
    expect(verifier.failure()?.message).toBe(
      'host key for 127.0.0.2:2222 cannot be checked: the server offered ssh-ed25519 ' +
        `${fingerprintOf(keys.ed25519.blob)}, and known_hosts has only ssh-rsa for this host (line 1); ` +
        'run `ssh-keyscan -p 2222 -t ed25519 127.0.0.2`, check the key out of band and add it to known_hosts'
    )
  })

  test('the ssh-keyscan hint names the offered key type and omits -p for port 22', () => {
    const knownHosts = line('web-1', keys.ed25519)
    const verifier = createHostVerifier({ address: 'web-1', port: 22, knownHosts })
    expect(verifier.verify(keys.rsa.blob)).toBe(false)
    const message = verifier.failure()?.message ?? ''
    expect(message).toContain(`the server offered ssh-rsa ${fingerprintOf(keys.rsa.blob)}`)
    expect(message).toContain('run `ssh-keyscan -t rsa web-1`')
    expect(message).not.toContain('-p')
    expect(verifier.verify(keys.ecdsa.blob)).toBe(false)
    expect(verifier.failure()?.message).toContain('`ssh-keyscan -t ecdsa web-1`')
  })

  test('a host with no entry is unknown-host with the ssh-keyscan command to run', () => {
    const knownHosts = [line('127.0.0.2', keys.ed25519), line('[127.0.0.3]:2222', keys.ed25519)].join('\n')
    const verifier = createHostVerifier({ address: '127.0.0.2', port: 2222, knownHosts })
    expect(verifier.algorithms).toEqual([])
    expect(verifier.verify(keys.ed25519.blob)).toBe(false)
    const failure = verifier.failure()
    expect(failure?.reason).toBe('unknown-host')
    expect(failure?.message).toBe(
      `no known_hosts entry for [127.0.0.2]:2222; the server offered ssh-ed25519 ${fingerprintOf(keys.ed25519.blob)}; ` +
        'add the output of `ssh-keyscan -p 2222 127.0.0.2` (checked out of band) to known_hosts'
    )
    const port22 = createHostVerifier({ address: 'web-9', port: 22, knownHosts })
    expect(port22.verify(keys.ed25519.blob)).toBe(false)
    expect(port22.failure()?.message).toContain('no known_hosts entry for web-9;')
    expect(port22.failure()?.message).toContain('`ssh-keyscan web-9`')
  })

  test('a matching @revoked entry rejects the key even when it is also listed and fingerprinted', () => {
    const knownHosts = [line('web-1', keys.ed25519), line('*', keys.ed25519, '@revoked')].join('\n')
    const verifier = createHostVerifier({
      address: 'web-1',
      port: 22,
      knownHosts,
      fingerprints: [fingerprintOf(keys.ed25519.blob)]
    })
    expect(verifier.verify(keys.ed25519.blob)).toBe(false)
    expect(verifier.failure()?.reason).toBe('revoked')
    expect(verifier.failure()?.message).toContain('@revoked in known_hosts (line 2)')
    expect(verifier.failure()?.message).toContain(fingerprintOf(keys.ed25519.blob))
    // Revoking one key does not revoke the host's other keys.
    const other = createHostVerifier({
      address: 'web-1',
      port: 22,
      knownHosts: knownHosts + '\n' + line('web-1', keys.rsa)
    })
    expect(other.verify(keys.rsa.blob)).toBe(true)
    expect(other.algorithms).toEqual(['ssh-ed25519', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'])
  })

  test('a @cert-authority entry alone does not vouch for its key', () => {
    const verifier = createHostVerifier({
      address: 'web-1',
      port: 22,
      knownHosts: line('*', keys.ed25519, '@cert-authority')
    })
    expect(verifier.verify(keys.ed25519.blob)).toBe(false)
    expect(verifier.failure()?.reason).toBe('unknown-host')
  })

  test.each([
    ['with the SHA256: prefix', (fp: string) => fp],
    ['without the prefix', (fp: string) => fp.slice('SHA256:'.length)],
    ['with = padding', (fp: string) => `${fp}=`],
    ['without prefix, with padding and spaces', (fp: string) => ` ${fp.slice('SHA256:'.length)}= `]
  ])('the fingerprints option accepts a key %s', (_how, write) => {
    const fingerprint = execFileSync(SSH_KEYGEN, ['-lf', keys.ecdsa.pubPath], { encoding: 'utf8' }).split(
      ' '
    )[1]
    const verifier = createHostVerifier({
      address: '127.0.0.2',
      port: 2222,
      fingerprints: [fingerprintOf(keys.rsa.blob), write(fingerprint ?? '')]
    })
    expect(verifier.algorithms).toEqual([])
    expect(verifier.verify(keys.ecdsa.blob)).toBe(true)
    expect(verifier.verify(keys.rsa.blob)).toBe(true)
    expect(verifier.failure()).toBeUndefined()
    expect(verifier.verify(keys.ed25519.blob)).toBe(false)
    expect(verifier.failure()?.reason).toBe('mismatch')
    expect(verifier.failure()?.message).toContain(
      `the server offered ssh-ed25519 ${fingerprintOf(keys.ed25519.blob)}`
    )
  })

  test('a fingerprint that is not SHA256 is refused up front', () => {
    expect(() => createHostVerifier({ address: 'a', port: 22, fingerprints: ['MD5:12:34:56'] })).toThrow(
      /not a SHA256 fingerprint/
    )
    expect(() => createHostVerifier({ address: 'a', port: 22, fingerprints: [''] })).toThrow(
      /not a SHA256 fingerprint/
    )
  })

  test('malformed known_hosts text throws when the verifier is created', () => {
    expect(() =>
      createHostVerifier({ address: 'a', port: 22, knownHosts: `${line('a', keys.ed25519)}\nbroken-line\n` })
    ).toThrow('known_hosts line 2: missing key type')
  })

  test('with neither known_hosts nor fingerprints every key is rejected as unknown-host', () => {
    for (const opts of [{}, { fingerprints: [] }, { knownHosts: '' }, { knownHosts: '# nothing\n' }]) {
      const verifier = createHostVerifier({ address: '127.0.0.2', port: 2222, ...opts })
      expect(verifier.algorithms).toEqual([])
      for (const key of Object.values(keys)) {
        expect(verifier.verify(key.blob)).toBe(false)
        expect(verifier.failure()).toMatchObject({
          reason: 'unknown-host',
          offeredType: key.keyType,
          offeredFingerprint: fingerprintOf(key.blob)
        })
      }
    }
  })

  test('a malformed key blob is rejected without throwing', () => {
    const verifier = createHostVerifier({
      address: 'web-1',
      port: 22,
      knownHosts: line('web-1', keys.ed25519)
    })
    expect(verifier.verify(Buffer.from([1, 2, 3]))).toBe(false)
    expect(verifier.failure()?.reason).toBe('mismatch')
    expect(verifier.verify(keys.ed25519.blob)).toBe(true)
  })
})
