/**
 * `safe-deploy logs` against a real sshd host: logs.command runs inside `current`, each line prefixed by the
 * host; placeholders are filled and quoted; --follow streams until SIGINT, which ends it with exit 0 and
 * leaves no command running on the host; no lock is taken.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { appendFileSync, readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { spawnCli } from './harness/cliproc.js'
import { waitFor } from './harness/app.js'
import { lockExists, project, stopApp, type Project } from './support.js'

let host: SshHost
let root: string
let p: Project
let name: string

beforeAll(async () => {
  host = await startSshd()
  root = host.root('ledger')
  p = await project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      logs: {
        command: 'echo "since={since} epoch={since_epoch} lines={lines}"; tail -n {lines} logs/app.log'
      }
    })
  })
  p.app({ version: '1.0.0' })
  const r = await p.deploy()
  if (r.code !== 0) throw new Error(r.stderr)
  name = `${host.address}:${host.port}`
})

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
})

/** Processes whose working dir is under the deploy root (what a logs command leaves running there). */
function processesUnder(dir: string): string[] {
  const out: string[] = []
  for (const pid of readdirSync('/proc').filter(d => /^\d+$/.test(d))) {
    try {
      if (!readlinkSync(`/proc/${pid}/cwd`).startsWith(dir)) continue
      out.push(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim())
    } catch {
      // gone, or not ours to read
    }
  }
  return out
}

describe('safe-deploy logs', () => {
  test('prints the last N lines of each host, prefixed by the host, with {since} and {lines} filled in', async () => {
    appendFileSync(join(root, 'shared', 'logs', 'app.log'), 'line one\nline two\n')
    const before = Date.now()
    const r = await p.run(['logs', '--since', '1h', '--lines', '2'])
    expect(r.code).toBe(0)
    const lines = r.stdout.trimEnd().split('\n')
    expect(lines.slice(1)).toEqual([`${name} | line one`, `${name} | line two`])
    const m = /^(.*) \| since=(\S+) epoch=(\d+) lines=2$/.exec(lines[0] as string)
    expect(m?.[1]).toBe(name)
    const since = Date.parse(m?.[2] as string)
    expect(Math.abs(since - (before - 3_600_000))).toBeLessThan(60_000)
    expect(Number(m?.[3]) * 1000).toBe(since)
    expect(lockExists(root)).toBe(false)
  })

  test('--hosts selects hosts like --host; an unknown one is bad input', async () => {
    const r = await p.run(['logs', '--hosts', name, '--lines', '1'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(`${name} | line two`)
    const bad = await p.run(['logs', '--hosts', 'nope'])
    expect(bad.code).toBe(2)
    const lines = await p.run(['logs', '--lines', 'many'])
    expect(lines.code).toBe(2)
    expect(lines.stderr).toContain('--lines')
  })

  test('--follow streams new lines until SIGINT: exit 0, nothing left running on the host, no lock', async () => {
    const proc = spawnCli(['logs', '--follow', '--lines', '1', '--config', p.configFile], p.env, p.dir)
    await waitFor('the last line', () => proc.stdout().includes(`${name} | line two`), 20_000)
    appendFileSync(join(root, 'shared', 'logs', 'app.log'), 'a new line\n')
    await waitFor('the new line', () => proc.stdout().includes(`${name} | a new line`), 20_000)
    expect(processesUnder(root).some(c => c.startsWith('tail'))).toBe(true)
    expect(lockExists(root)).toBe(false)
    proc.child.kill('SIGINT')
    const r = await proc.exited
    expect(r.code).toBe(0)
    expect(r.stderr).not.toContain('undoing')
    // the host's command ended with the channel
    await waitFor(
      'tail to end on the host',
      () => !processesUnder(root).some(c => c.startsWith('tail')),
      10_000
    )
  })

  test('without logs.command, logs is refused as bad input', async () => {
    const q = await project({ hosts: [host], root: host.root('nologs') })
    const r = await q.run(['logs'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('logs.command')
  })
})
