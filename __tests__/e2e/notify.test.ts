/**
 * Notifications (`notify:`, src/notify/) end to end: real deploys to a real sshd host, told to a local HTTP
 * server standing in for Telegram's Bot API, Slack, Discord, Teams and a generic webhook
 * (harness/notify-standin.ts: none of the real APIs is reachable from the tests, and each channel's base URL
 * or webhook URL points at the stand-in). It asserts what arrives: the requests, their payloads and
 * signatures, the retries; and that a failing or hanging notifier never changes the deploy's outcome.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { createHmac } from 'node:crypto'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fastShell, freePort, startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { expectExit, resultOf, spawnCli } from './harness/cliproc.js'
import { pausePoint } from './harness/pause.js'
import { startStandIn, type StandIn } from './harness/notify-standin.js'
import { currentOf, lastLog, project, stopApp, type Project } from './support.js'
import { deliver } from '../../src/notify/deliver.js'

const TOKEN = '7011223344:AAE-notify-test-token-x9'
const HOOK_SECRET = 'hook-secret-for-the-test'

let host: SshHost
let api: StandIn
const pidFiles: string[] = []

beforeAll(async () => {
  host = await startSshd({ extraConfig: fastShell() })
  api = await startStandIn()
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  await api.close()
  await stopAll()
})

type Config = Record<string, unknown>

/** A project on `host` whose `notify:` is `notify` (with the stand-in's URL), run as a GitLab job. */
async function setup(
  name: string,
  notify: (url: string) => unknown[]
): Promise<{ p: Project; root: string }> {
  const root = host.root(name)
  const p = await project({
    hosts: [host],
    root,
    envExtra: {
      TELEGRAM_TOKEN: TOKEN,
      HOOK_SECRET,
      CI_JOB_URL: `https://gitlab.example.com/acme/shop/-/jobs/${name}`
    },
    config: base => ({
      ...base,
      verify: { http: { ...((base.verify as Config).http as Config), retries: 6, interval: '250ms' } },
      notify: notify(api.url)
    })
  })
  pidFiles.push(join(root, 'shared', 'app.pid'))
  return { p, root }
}

/** The requests the stand-in got on `path` since `from`. */
const sent = (path: string, from = 0) => api.requests.slice(from).filter(r => r.path === path)
const telegramPath = `/bot${TOKEN}/sendMessage`

/** The token and the webhook secret appear nowhere the run wrote: terminal, result, log, report. */
function expectNoSecrets(p: Project, out: { stdout: string; stderr: string }) {
  const files = readdirSync(p.logDir).map(f => readFileSync(join(p.logDir, f), 'utf8'))
  for (const text of [out.stdout, out.stderr, ...files]) {
    expect(text).not.toContain(TOKEN)
    expect(text).not.toContain(HOOK_SECRET)
  }
}

describe('a deploy tells the team', () => {
  test('success: one Telegram message with the release, the actor, the host and the run URL', async () => {
    const { p, root } = await setup('notify-ok', url => [
      { telegram: { token: 'env:TELEGRAM_TOKEN', chat_id: -100777, thread_id: 12, api_url: url } }
    ])
    const from = api.requests.length
    p.app({ version: '1.0.0' })
    const r = await p.deploy(['--json'])
    expectExit(r, 0)
    const release = resultOf(r).release as string
    expect(currentOf(root)).toBe(`releases/${release}`)
    const msgs = sent(telegramPath, from)
    expect(msgs).toHaveLength(1)
    const m = msgs[0]!
    expect(m.method).toBe('POST')
    expect(m.headers['content-type']).toBe('application/json')
    const body = m.json() as Record<string, unknown>
    expect(body).toMatchObject({ chat_id: -100777, message_thread_id: 12, parse_mode: 'HTML' })
    const text = body.text as string
    expect(text.split('\n')[0]).toBe('<b>✅ ledger: deploy succeeded</b>')
    expect(text).toContain(`<b>release</b>: <code>${release}</code>`)
    expect(text).toContain('<b>actor</b>: <code>')
    expect(text).toContain(`• ${host.address}:${host.port}: ok`)
    expect(text).toMatch(/<i>DEPLOYMENT SUCCESS \(\d+\.\d s\)<\/i>/)
    expect(text).toContain('<a href="https://gitlab.example.com/acme/shop/-/jobs/notify-ok">Open the run</a>')
    expectNoSecrets(p, r)
  })

  test('a failing deploy that rolls back: a `rollback` message naming the failed host; start first when asked', async () => {
    const { p } = await setup('notify-rollback', url => [
      { slack: { webhook: `${url}/services/T0/B0/slack`, on: ['start', 'rollback'] } },
      { discord: { webhook: `${url}/api/webhooks/1/discord`, on: ['success'] } }
    ])
    p.app({ version: '1.0.0' })
    expectExit(await p.deploy(), 0)
    const from = api.requests.length
    p.app({ version: '2.0.0', crashAfterMs: 0 })
    const r = await p.deploy(['--json'])
    expectExit(r, 4)
    const res = resultOf(r)
    const failedHost = `${host.address}:${host.port}`
    expect(res.error?.host).toBe(failedHost)
    const slack = sent('/services/T0/B0/slack', from)
    expect(slack.map(m => (m.json() as { text: string }).text.split(':')[0])).toEqual([
      '🚀 ledger',
      '↩️ ledger'
    ])
    const end = slack[1]!.json() as {
      text: string
      blocks: { type: string; text?: { text: string }; fields?: { text: string }[] }[]
    }
    expect(end.text).toBe(`↩️ ledger: deploy failed and was rolled back: ${res.verdict}`)
    expect(end.blocks.find(b => b.type === 'section' && b.fields)?.fields).toEqual(
      expect.arrayContaining([
        { type: 'mrkdwn', text: `*release*\n${res.release}` },
        { type: 'mrkdwn', text: `*failed at*\nverify on ${failedHost}` }
      ])
    )
    // per host (RunResult.hostResults): result, stage reached, its duration, its own error
    expect(end.blocks.find(b => b.text?.text.startsWith('*hosts*'))?.text?.text).toMatch(
      new RegExp(
        `• ${failedHost.replace(/\./g, '\\.')}: rolled-back at verify \\(\\d+\\.\\d s\\): health check`
      )
    )
    // the discord channel is told successes only: nothing for this run
    expect(sent('/api/webhooks/1/discord', from)).toHaveLength(0)
  })

  test('a manual rollback is a `rollback` message (Teams: an Adaptive Card)', async () => {
    const { p } = await setup('notify-manual', url => [
      { teams: { webhook: `${url}/workflows/teams`, on: ['rollback'] } }
    ])
    p.app({ version: '1.0.0' })
    const v1 = resultOf(await p.deploy(['--json'])).release
    p.app({ version: '2.0.0' })
    expectExit(await p.deploy(), 0)
    const from = api.requests.length
    const r = await p.run(['rollback'])
    expectExit(r, 0)
    const msgs = sent('/workflows/teams', from)
    expect(msgs).toHaveLength(1)
    const card = msgs[0]!.json() as {
      type: string
      attachments: { contentType: string; content: { body: { type: string; text?: string }[] } }[]
    }
    expect(card.type).toBe('message')
    expect(card.attachments[0]!.contentType).toBe('application/vnd.microsoft.card.adaptive')
    expect(card.attachments[0]!.content.body[0]!.text).toBe(`↩️ ledger: rolled back to ${v1}`)
  })

  test('the webhook answers 500 twice, then 200: 3 requests, one body, one valid signature; the deploy exits 0', async () => {
    const { p } = await setup('notify-retry', url => [
      { webhook: { url: `${url}/hooks/retry`, secret: 'env:HOOK_SECRET', headers: { 'X-Team': 'ops' } } }
    ])
    api.reply((r, n) => (r.path === '/hooks/retry' && n < 2 ? { status: 500, body: 'busy' } : undefined))
    p.app({ version: '1.0.0' })
    const r = await p.deploy(['--json'])
    api.reply(() => undefined)
    expectExit(r, 0)
    const hooks = sent('/hooks/retry')
    expect(hooks).toHaveLength(3)
    const signatures = hooks.map(h => h.headers['x-safe-deploy-signature'])
    expect(new Set(signatures).size).toBe(1)
    expect(new Set(hooks.map(h => h.body)).size).toBe(1)
    const body = hooks[0]!.body
    expect(signatures[0]).toBe(`sha256=${createHmac('sha256', HOOK_SECRET).update(body).digest('hex')}`)
    expect(hooks[0]!.headers['x-team']).toBe('ops')
    expect(hooks[0]!.headers['x-safe-deploy-event']).toBe('success')
    expect(JSON.parse(body)).toMatchObject({
      event: 'success',
      app: 'ledger',
      command: 'deploy',
      status: 'success',
      exit_code: 0,
      release: resultOf(r).release,
      run_url: 'https://gitlab.example.com/acme/shop/-/jobs/notify-retry',
      hosts: [{ name: `${host.address}:${host.port}`, result: 'ok' }]
    })
    expect(lastLog(p.logDir)).toContain('notification to webhook (success) sent after 3 attempts')
    expectNoSecrets(p, r)
  })

  test('a stand-in that never answers: the deploy still exits 0, with a warning line', async () => {
    const { p, root } = await setup('notify-hang', url => [
      { discord: { webhook: `${url}/api/webhooks/2/hang`, timeout: '2s' } }
    ])
    api.reply(r => (r.path === '/api/webhooks/2/hang' ? 'hang' : undefined))
    p.app({ version: '1.0.0' })
    const r = await p.deploy(['--json'])
    api.reply(() => undefined)
    expectExit(r, 0)
    expect(currentOf(root)).toBe(`releases/${resultOf(r).release}`)
    expect(resultOf(r).status).toBe('success')
    const warning =
      'notification to discord (success) failed: POST ***: no answer within the time limit (1 attempt); the deploy goes on'
    expect(r.stderr).toContain(warning)
    expect(lastLog(p.logDir)).toContain(`[finish] ${warning}`)
  })

  test('Telegram unreachable: the warning names the URL with the token redacted; the token is nowhere', async () => {
    const closed = await freePort()
    const { p } = await setup('notify-down', () => [
      { telegram: { token: 'env:TELEGRAM_TOKEN', chat_id: 5, api_url: `http://127.0.0.1:${closed}` } }
    ])
    p.app({ version: '1.0.0' })
    const r = await p.deploy(['--json'])
    expectExit(r, 0)
    expect(r.stderr).toContain(
      `notification to telegram (success) failed: POST http://127.0.0.1:${closed}/bot***/sendMessage: connect ECONNREFUSED 127.0.0.1:${closed} (3 attempts); the deploy goes on`
    )
    expectNoSecrets(p, r)
  })
})

describe('a cancelled run (SIGINT, as a cancelled CI job sends)', () => {
  test('cancelled during verify: the run undoes the switch, then sends `rollback` (exit 4)', async () => {
    const pause = pausePoint(tempDir('marks-'), 'verify')
    const { p } = await setup('notify-cancel', url => [
      { webhook: { url: `${url}/hooks/cancel`, secret: 'env:HOOK_SECRET', on: ['rollback', 'failure'] } }
    ])
    const cfg = readFileSync(p.configFile, 'utf8')
    // a verify command that waits while the test sends SIGINT
    writeFileSync(
      p.configFile,
      cfg.replace(/^verify:\n/m, `verify:\n  command: ${JSON.stringify(pause.shell)}\n`)
    )
    p.app({ version: '1.0.0' })
    expectExit(await p.deploy(), 0)
    p.app({ version: '2.0.0' })
    pause.arm()
    const proc = spawnCli(['deploy', '--json', '--config', p.configFile], p.env, p.dir)
    await proc.line(/^== verify$/)
    await pause.reached()
    await proc.cancel()
    pause.release()
    const r = await proc.exited
    expectExit(r, 4)
    const hooks = sent('/hooks/cancel')
    expect(hooks).toHaveLength(1)
    expect(JSON.parse(hooks[0]!.body)).toMatchObject({
      event: 'rollback',
      status: 'rolled-back',
      exit_code: 4,
      error: { stage: 'verify' }
    })
    expect((JSON.parse(hooks[0]!.body) as { error: { message: string } }).error.message).toMatch(
      /^interrupted/
    )
  })
})

describe('delivery (src/notify/deliver.ts) against the stand-in', () => {
  const redact = (t: string) => t.split(TOKEN).join('***')

  test('429 with Retry-After: waits and retries; the second attempt goes through', async () => {
    api.reply((r, n) =>
      r.path === '/limited' && n === 0 ? { status: 429, headers: { 'retry-after': '1' } } : undefined
    )
    const d = await deliver(
      { url: `${api.url}/limited`, headers: {}, body: '{}' },
      Date.now() + 10_000,
      redact
    )
    api.reply(() => undefined)
    expect(d).toEqual({ attempts: 2, status: 200 })
    expect(sent('/limited')).toHaveLength(2)
  })

  test('a 4xx (bad token, unknown chat) is not retried; the error says what the API said, redacted', async () => {
    api.reply(r =>
      r.path.endsWith('/sendMessage') && r.path.includes('/bad/')
        ? { status: 400, body: '{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}' }
        : undefined
    )
    const url = `${api.url}/bad/bot${TOKEN}/sendMessage`
    await expect(deliver({ url, headers: {}, body: '{}' }, Date.now() + 10_000, redact)).rejects.toThrow(
      `POST ${api.url}/bad/bot***/sendMessage: HTTP 400: Bad Request: chat not found (1 attempt)`
    )
    api.reply(() => undefined)
    expect(api.requests.filter(r => r.path === `/bad/bot${TOKEN}/sendMessage`)).toHaveLength(1)
  })

  test('a Retry-After longer than we wait ends the retries', async () => {
    api.reply(r => (r.path === '/slow-down' ? { status: 503, headers: { 'retry-after': '120' } } : undefined))
    await expect(
      deliver({ url: `${api.url}/slow-down`, headers: {}, body: '{}' }, Date.now() + 10_000, redact)
    ).rejects.toThrow(/HTTP 503 \(Retry-After 120 s is longer than we wait\) \(1 attempt\)/)
    api.reply(() => undefined)
  })
})
