import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'
import { Layout } from '../../../src/commands/layout.js'
import {
  acquireLock,
  lockStatus,
  releaseLock,
  renewLock,
  type LockOwner,
  type LockOwnerFields
} from '../../../src/commands/lock.js'
import { parseKeyValues } from '../../../src/commands/release.js'
import { cleanup, runRemote, tempDir } from '../helpers/shell.js'

const alice: LockOwnerFields = {
  who: 'alice',
  run: 'https://github.com/acme/ledger/actions/runs/1',
  pid: 4242,
  runner: 'runner-1',
  command: 'deploy',
  token: 'tok-alice-0123456789abcdef'
}
const bob: LockOwnerFields = {
  who: 'bob',
  pid: 7,
  runner: 'laptop',
  command: 'deploy',
  token: 'tok-bob-fedcba9876543210'
}

interface Run {
  code: number | null
  state: string | undefined
  owner: LockOwner | undefined
  stdout: string
  stderr: string
}

describe('lock scripts run for real with /bin/sh', () => {
  let base: string
  let l: Layout
  const marker = 'PWNED'

  beforeEach(() => {
    base = tempDir('lock')
    const root = join(base, `srv 'app' $(touch ${marker})`)
    mkdirSync(root)
    l = new Layout(root)
  })
  afterEach(() => {
    expect(existsSync(join(base, marker))).toBe(false)
    cleanup(base)
  })

  const exec = async (script: string): Promise<Run> => {
    const r = await runRemote(script, { cwd: base })
    const kv = parseKeyValues(r.stdout)
    const ownerLine = kv.get('OWNER')?.[0]
    return {
      ...r,
      state: kv.get('STATE')?.[0],
      owner: ownerLine ? (JSON.parse(ownerLine) as LockOwner) : undefined
    }
  }
  const ownerJson = () => JSON.parse(readFileSync(join(l.lock, 'owner.json'), 'utf8')) as LockOwner
  const nowEpoch = () => Math.floor(Date.now() / 1000)
  const writeOwnerJson = (owner: object) => {
    mkdirSync(l.lock, { recursive: true })
    writeFileSync(join(l.lock, 'owner.json'), JSON.stringify(owner) + '\n')
  }

  test('the first deploy acquires the lock; owner.json says who, until when', async () => {
    const before = nowEpoch()
    const r = await exec(acquireLock(l, alice, 600).script)
    const after = nowEpoch()
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('STATE=acquired\n')
    const o = ownerJson()
    expect(o).toMatchObject({ ...alice })
    expect(o.expires_epoch).toBeGreaterThanOrEqual(before + 600)
    expect(o.expires_epoch).toBeLessThanOrEqual(after + 600)
    expect(o.started).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
    expect(Date.parse(o.started) / 1000).toBeGreaterThanOrEqual(before - 1)
    expect(o.expires).toBe(new Date(o.expires_epoch * 1000).toISOString().replace(/\.\d+Z$/, 'Z'))
    expect(readdirSync(l.lock)).toEqual(['owner.json'])
  })

  test('a second owner is told the lock is held, and by whom', async () => {
    await exec(acquireLock(l, alice, 600).script)
    const first = ownerJson()
    const r = await exec(acquireLock(l, bob, 600).script)
    expect(r.code).toBe(0)
    expect(r.state).toBe('held')
    expect(r.owner).toEqual(first)
    expect(r.owner).toMatchObject({ who: 'alice', token: alice.token })
    expect(r.owner?.expires_epoch).toBe(first.expires_epoch)
    // still alice's
    expect(ownerJson()).toEqual(first)
  })

  test('an owner.json that expired (by the host clock) is taken over', async () => {
    const stale = { ...alice, started: 'x', expires: 'y', expires_epoch: nowEpoch() - 5 }
    writeOwnerJson(stale)
    const r = await exec(acquireLock(l, bob, 600).script)
    expect(r.code).toBe(0)
    expect(r.state).toBe('taken-over')
    expect(r.owner).toEqual(stale)
    expect(ownerJson()).toMatchObject({ who: 'bob', token: bob.token })
    expect(ownerJson().expires_epoch).toBeGreaterThan(nowEpoch() + 500)
  })

  test('a lock dir without owner.json expires ttl seconds after it was made', async () => {
    mkdirSync(l.lock, { recursive: true })
    const old = Date.now() / 1000 - 700
    utimesSync(l.lock, old, old)
    const taken = await exec(acquireLock(l, bob, 600).script)
    expect(taken.state).toBe('taken-over')
    expect(ownerJson().who).toBe('bob')
  })

  test('a fresh lock dir without owner.json is held', async () => {
    mkdirSync(l.lock, { recursive: true })
    const r = await exec(acquireLock(l, bob, 600).script)
    expect(r.state).toBe('held')
    expect(r.stdout).toBe('OWNER=\nSTATE=held\n')
    expect(existsSync(join(l.lock, 'owner.json'))).toBe(false)
  })

  test('releaseLock with the wrong token says not-ours and keeps the lock', async () => {
    await exec(acquireLock(l, alice, 600).script)
    const before = ownerJson()
    const r = await exec(releaseLock(l, bob.token).script)
    expect(r.state).toBe('not-ours')
    expect(r.owner).toEqual(before)
    expect(ownerJson()).toEqual(before)
    // a prefix of the real token is not the token
    expect((await exec(releaseLock(l, alice.token.slice(0, -1)).script)).state).toBe('not-ours')
    expect(existsSync(l.lock)).toBe(true)
  })

  test('releaseLock with the right token removes the lock; then it is free', async () => {
    await exec(acquireLock(l, alice, 600).script)
    const r = await exec(releaseLock(l, alice.token).script)
    expect(r.state).toBe('released')
    expect(r.owner?.who).toBe('alice')
    expect(existsSync(l.lock)).toBe(false)
    expect((await exec(releaseLock(l, alice.token).script)).stdout).toBe('STATE=free\n')
    expect((await exec(acquireLock(l, bob, 600).script)).state).toBe('acquired')
  })

  test('releaseLock without a token (a person) removes whoever holds it', async () => {
    await exec(acquireLock(l, alice, 600).script)
    const r = await exec(releaseLock(l).script)
    expect(r.state).toBe('released')
    expect(r.owner?.token).toBe(alice.token)
    expect(existsSync(l.lock)).toBe(false)
  })

  test('renewLock extends our lock and leaves someone else’s alone', async () => {
    writeOwnerJson({ ...alice, started: 's', expires: 'e', expires_epoch: nowEpoch() + 10 })
    const lost = await exec(renewLock(l, bob, 900).script)
    expect(lost.stdout).toBe('STATE=lost\n')
    expect(ownerJson().expires_epoch).toBeLessThanOrEqual(nowEpoch() + 10)
    const renewed = await exec(renewLock(l, alice, 900).script)
    expect(renewed.stdout).toBe('STATE=renewed\n')
    expect(ownerJson()).toMatchObject({ who: 'alice', token: alice.token })
    expect(ownerJson().expires_epoch).toBeGreaterThanOrEqual(nowEpoch() + 890)
  })

  test('renewLock when the lock is gone says lost', async () => {
    expect((await exec(renewLock(l, alice, 900).script)).state).toBe('lost')
  })

  test('lockStatus: free, then held with the owner and the host clock', async () => {
    expect((await exec(lockStatus(l).script)).stdout).toBe('STATE=free\n')
    await exec(acquireLock(l, alice, 600).script)
    const r = await exec(lockStatus(l).script)
    expect(r.state).toBe('held')
    expect(r.owner).toEqual(ownerJson())
    const now = Number(parseKeyValues(r.stdout).get('NOW')?.[0])
    expect(Math.abs(now - nowEpoch())).toBeLessThanOrEqual(2)
  })

  test('hostile owner fields end up in owner.json as valid JSON equal to the input', async () => {
    const hostile: LockOwnerFields = {
      who: `it's "me"\nsecond line $(touch ${marker}) \`touch ${marker}\``,
      run: `https://x/?a='b'&c="d" ; touch ${marker} %s %n \\n \\`,
      pid: 1,
      runner: 'rünner 🚀 \t tab',
      command: '"expires_epoch":9999999999}',
      token: 'tok-hostile-1'
    }
    const r = await exec(acquireLock(l, hostile, 600).script)
    expect(r.state).toBe('acquired')
    const text = readFileSync(join(l.lock, 'owner.json'), 'utf8')
    expect(text.split('\n')).toHaveLength(2)
    const o = JSON.parse(text) as LockOwner
    const { started: _s, expires: _e, expires_epoch: exp, ...fields } = o
    expect(fields).toEqual(hostile)
    expect(exp).toBeLessThanOrEqual(nowEpoch() + 600)
    // the expiry the script reads back is ours, not one smuggled in through a field
    const second = await exec(acquireLock(l, bob, 600).script)
    expect(second.state).toBe('held')
    expect(second.owner).toEqual(o)
    expect((await exec(releaseLock(l, 'tok-hostile-1').script)).state).toBe('released')
  })

  test('two owners racing: exactly one acquires', async () => {
    const owners = Array.from({ length: 6 }, (_, i) => ({ ...bob, who: `w${i}`, token: `tok-${i}` }))
    const results = await Promise.all(owners.map(o => exec(acquireLock(l, o, 600).script)))
    const states = results.map(r => r.state).sort()
    expect(states).toEqual(['acquired', 'held', 'held', 'held', 'held', 'held'])
    const winner = results.findIndex(r => r.state === 'acquired')
    expect(ownerJson().token).toBe(`tok-${winner}`)
  })

  test('exact script for release by token', () => {
    expect(releaseLock(new Layout('/srv/ledger'), 'abc').script).toBe(
      [
        'meta=/srv/ledger/.safe-deploy',
        'lock=/srv/ledger/.safe-deploy/lock',
        'mkdir -p "$meta" || exit 20',
        'exec 9>>"$meta/lock.guard"',
        'if command -v flock >/dev/null 2>&1; then flock -w 15 9 || true; fi',
        '[ -d "$lock" ] || { echo STATE=free; exit 0; }',
        'printf "OWNER=%s\\n" "$(cat "$lock/owner.json" 2>/dev/null | head -n 1)"',
        `grep -qF '"token":"abc"' "$lock/owner.json" 2>/dev/null || { echo STATE=not-ours; exit 0; }`,
        'rm -rf "$lock" && echo STATE=released'
      ].join('\n')
    )
  })
})
