/** verify.heartbeat's probe, run as on a host: the file's age against `current`'s switch and max_age. */
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'
import { lutimesSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { heartbeatProbe } from '../../../src/commands/health.js'
import { withEnv } from '../../../src/commands/command.js'
import { Layout } from '../../../src/commands/layout.js'
import { parseKeyValues } from '../../../src/commands/release.js'
import { cleanup, runRemote, tempDir } from '../helpers/shell.js'

let root: string
let layout: Layout
const now = () => Math.floor(Date.now() / 1000)

beforeEach(() => {
  root = tempDir('sd-heartbeat')
  layout = new Layout(root)
  mkdirSync(join(layout.release('r1'), 'run'), { recursive: true })
  symlinkSync('releases/r1', layout.current)
})
afterEach(() => cleanup(root))

/** `current` switched `switchedAgo` s ago; the file touched `beatAgo` s ago (undefined: no file). */
async function probe(switchedAgo: number, beatAgo: number | undefined, maxAge: number) {
  const t = now()
  lutimesSync(layout.current, t - switchedAgo, t - switchedAgo)
  if (beatAgo !== undefined) {
    const f = join(layout.release('r1'), 'run', 'hb')
    writeFileSync(f, '')
    utimesSync(f, t - beatAgo, t - beatAgo)
  }
  const r = await runRemote(withEnv(heartbeatProbe(layout, 'r1', 'run/hb', maxAge)))
  expect(r.code).toBe(0)
  const kv = parseKeyValues(r.stdout)
  return { state: kv.get('HEARTBEAT')?.[0], age: Number(kv.get('AGE')?.[0]) }
}

describe('heartbeatProbe', () => {
  test('fresh: touched after the switch, within max_age', async () => {
    const r = await probe(30, 2, 10)
    expect(r.state).toBe('fresh')
    expect(r.age).toBeGreaterThanOrEqual(2)
  })

  test('old: last touched before the switch (by the instance that served before)', async () => {
    expect((await probe(5, 8, 1)).state).toBe('old')
  })

  test('stale: after the switch, but older than max_age', async () => {
    expect((await probe(100, 50, 1)).state).toBe('stale')
  })

  test('missing: no file', async () => {
    expect((await probe(5, undefined, 1)).state).toBe('missing')
  })

  test('a file name with spaces and quotes is one word', async () => {
    const t = now()
    const f = join(layout.release('r1'), "it's a beat")
    writeFileSync(f, '')
    utimesSync(f, t, t)
    lutimesSync(layout.current, t - 5, t - 5)
    const r = await runRemote(withEnv(heartbeatProbe(layout, 'r1', "it's a beat", 5)))
    expect(parseKeyValues(r.stdout).get('HEARTBEAT')?.[0]).toBe('fresh')
  })
})
