/**
 * Long-polling bots on a real sshd host: two instances on one token get `409 Conflict` (harness/app.ts
 * writeBot models Telegram's answer), so a restart that starts the new one before stopping the old fails
 * the telegram-polling log preset and is rolled back; with stages.stop the old one is stopped first and the
 * deploy passes; verify.heartbeat fails a bot that runs but no longer polls.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { writeBot } from './harness/app.js'
import { currentOf, lastLog, project, releasesOf, stopApp, type Project } from './support.js'

let host: SshHost
const roots: string[] = []

beforeAll(async () => {
  host = await startSshd()
})

afterAll(async () => {
  for (const root of roots) await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
})

async function botProject(name: string, stop: boolean): Promise<{ p: Project; root: string }> {
  const root = host.root(name)
  roots.push(root)
  const p = await project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      app: name,
      env: {
        PID_FILE: `${root}/shared/app.pid`,
        APP_LOG: `${root}/shared/logs/app.log`,
        BOT_POLLERS: `${root}/shared/data/pollers`,
        HEARTBEAT: `${root}/shared/data/heartbeat`
      },
      stages: { restart: 'bin/restart', ...(stop ? { stop: 'bin/stop' } : {}) },
      logs: { command: "awk -v s={since_epoch} '$1 >= s' logs/app.log | tail -n {lines}" },
      verify: {
        logs: { preset: 'telegram-polling' },
        heartbeat: { file: 'data/heartbeat', max_age: '3s' },
        window: '1s'
      }
    })
  })
  return { p, root }
}

const conflicts = (root: string) =>
  readFileSync(join(root, 'shared', 'logs', 'app.log'), 'utf8')
    .split('\n')
    .filter(l => l.includes('409 Conflict'))

const pollers = (root: string) => readdirSync(join(root, 'shared', 'data', 'pollers'))

describe('long-polling bots', () => {
  test('start-before-stop gets 409 Conflict: the telegram-polling preset fails verify and rolls back', async () => {
    const { p, root } = await botProject('botoverlap', false)
    writeBot(join(p.dir, 'app'), { version: '1' })
    expect((await p.deploy()).code).toBe(0)
    const [v1] = releasesOf(root) as [string]
    writeBot(join(p.dir, 'app'), { version: '2' })
    const r = await p.deploy()
    expect(r.code).toBe(4)
    expect(r.stderr).toContain('409 Conflict')
    expect(lastLog(p.logDir)).toMatch(
      /the logs on .* show \d+ line\(s\) matching .*terminated by other getUpdates/
    )
    expect(currentOf(root)).toBe(`releases/${v1}`)
  })

  test('stages.stop stops the old instance first: no 409, one poller, heartbeat fresh', async () => {
    const { p, root } = await botProject('botstop', true)
    writeBot(join(p.dir, 'app'), { version: '1' })
    expect((await p.deploy()).code).toBe(0)
    writeBot(join(p.dir, 'app'), { version: '2' })
    const r = await p.deploy()
    expect(r.code).toBe(0)
    const [, v2] = releasesOf(root) as [string, string]
    expect(currentOf(root)).toBe(`releases/${v2}`)
    expect(conflicts(root)).toEqual([])
    expect(pollers(root)).toHaveLength(1)
    const log = lastLog(p.logDir)
    expect(log.indexOf('(stages.stop)')).toBeGreaterThan(-1)
    expect(log.indexOf('(stages.stop)')).toBeLessThan(log.indexOf('current -> releases/'))
    expect(log).toMatch(/heartbeat data\/heartbeat: touched \d+ s ago/)
    expect(log).toContain('log scan: no line matches')
  })

  test('a bot that runs but no longer polls fails verify.heartbeat; the rollback stops it and the old bot beats again', async () => {
    const { p, root } = await botProject('botbeat', true)
    writeBot(join(p.dir, 'app'), { version: '1' })
    expect((await p.deploy()).code).toBe(0)
    const [v1] = releasesOf(root) as [string]
    writeBot(join(p.dir, 'app'), { version: '2', beats: false })
    const r = await p.deploy()
    expect(r.code).toBe(4)
    expect(lastLog(p.logDir)).toMatch(
      /heartbeat check failed on .*: data\/heartbeat was last touched \d+ s ago, before the switch/
    )
    expect(currentOf(root)).toBe(`releases/${v1}`)
    expect(conflicts(root)).toEqual([])
    // the hung v2 was stopped before v1 started again: one poller, v1's
    expect(pollers(root)).toHaveLength(1)
    expect(
      readFileSync(join(root, 'shared', 'logs', 'app.log'), 'utf8')
        .trimEnd()
        .split('\n')
        .pop()
    ).toMatch(/\[bot 1 pid \d+\] started polling/)
  })
})
