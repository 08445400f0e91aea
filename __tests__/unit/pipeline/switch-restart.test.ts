/**
 * The symlink switch and the restart run as one script (issue 12): one command on the host, and a failure
 * still names the step that failed, with `current` as that step left it. Real /bin/sh scripts on this machine
 * (the local transport) in a temp deploy root.
 */
import { afterEach, describe, expect, test } from '@jest/globals'
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { validateConfig } from '../../../src/config/load.js'
import { Layout } from '../../../src/commands/layout.js'
import { DeployLog } from '../../../src/report/log.js'
import { Redactor } from '../../../src/report/redact.js'
import { LocalTransport } from '../../../src/transport/local.js'
import type { HostSession, RunContext } from '../../../src/host/context.js'
import type { ExecOptions } from '../../../src/transport/types.js'
import { symlinkStrategy } from '../../../src/pipeline/symlink.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function setup(restart: string) {
  const root = mkdtempSync(join(tmpdir(), 'switch-restart-'))
  dirs.push(root)
  for (const r of ['R1', 'R2']) {
    mkdirSync(join(root, 'releases', r), { recursive: true })
    writeFileSync(join(root, 'releases', r, 'NAME'), `${r}\n`)
  }
  symlinkSync('releases/R1', join(root, 'current'))
  const { config } = validateConfig(
    { app: 'shop', path: root, hosts: [{ local: true }], stages: { restart } },
    '/tmp/x.yml',
    {},
    {}
  )
  const lines: string[] = []
  const labels: string[] = []
  const t = new LocalTransport('local')
  const exec = t.exec.bind(t)
  t.exec = (command: string, o?: ExecOptions) => {
    labels.push(o?.label ?? command)
    return exec(command, o)
  }
  const s = {
    host: { name: 'local', kind: 'local', primary: true, roles: [] },
    t,
    layout: new Layout(root),
    releases: ['R1', 'R2'],
    current: 'R1'
  } as unknown as HostSession
  const info = (l: string) => lines.push(l)
  const ctx = {
    config,
    sessions: [s],
    signal: new AbortController().signal,
    startedAt: new Date(),
    verbose: false,
    log: new DeployLog(
      undefined,
      { info, warn: info, error: info, startGroup() {}, endGroup() {} },
      new Redactor([])
    )
  } as unknown as RunContext
  return { root, s, ctx, lines, labels }
}

/** The error a promise rejects with (undefined: it resolved). */
const failureOf = (p: Promise<void>) =>
  p.then(
    () => undefined,
    (x: unknown) => x as Error
  )

describe('symlink switch + restart in one script', () => {
  test('both pass: one command; `current -> ...` is logged before the restart output, the marker never', async () => {
    const { root, s, ctx, lines, labels } = setup('echo "restarting $(cat NAME)"')
    await symlinkStrategy().activate(ctx, s, 'R2', 'switch')
    expect(readlinkSync(join(root, 'current'))).toBe('releases/R2')
    expect(labels).toEqual(['switch current to R2, then restart'])
    const at = (re: RegExp) => lines.findIndex(l => re.test(l))
    expect(at(/current -> releases\/R2$/)).toBeGreaterThanOrEqual(0)
    expect(at(/current -> releases\/R2$/)).toBeLessThan(at(/restarting R2$/))
    expect(lines.join('\n')).not.toContain('#safe-deploy:switched')
  })

  test('the restart fails: the error is the restart’s, and current was switched', async () => {
    const { root, s, ctx, lines } = setup('echo "port in use" >&2; exit 7')
    const e = await failureOf(symlinkStrategy().activate(ctx, s, 'R2', 'switch'))
    expect(e?.message).toBe('restart failed on local (exit 7): port in use')
    expect(readlinkSync(join(root, 'current'))).toBe('releases/R2')
    expect(lines.some(l => /current -> releases\/R2$/.test(l))).toBe(true)
  })

  test('the switch fails: the error is the switch’s, current is unchanged and the restart never ran', async () => {
    const { root, s, ctx, lines } = setup('touch RESTARTED')
    rmSync(join(root, 'releases', 'R2'), { recursive: true })
    const e = await failureOf(symlinkStrategy().activate(ctx, s, 'R2', 'switch'))
    expect(e?.message).toBe('switch current to R2 failed on local (exit 1): release R2 does not exist')
    expect(readlinkSync(join(root, 'current'))).toBe('releases/R1')
    expect(readFileSync(join(root, 'releases', 'R1', 'NAME'), 'utf8')).toBe('R1\n')
    expect(lines.some(l => /current -> /.test(l))).toBe(false)
    expect(() => readFileSync(join(root, 'releases', 'R1', 'RESTARTED'))).toThrow()
  })
})
