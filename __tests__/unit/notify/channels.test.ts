/**
 * The payload each channel sends (src/notify/channels.ts), exactly: what Telegram, Slack, Discord, Teams and a
 * generic webhook receive for one run. Pure functions of the notice; the HTTP side is in
 * __tests__/e2e/notify.test.ts against a local stand-in server.
 */
import { describe, expect, test } from '@jest/globals'
import { createHmac } from 'node:crypto'
import {
  discordRequest,
  escapeHtml,
  slackRequest,
  teamsRequest,
  telegramRequest,
  webhookRequest
} from '../../../src/notify/channels.js'
import { eventOf, finishNotice, startNotice, type NoticeRun } from '../../../src/notify/notice.js'
import type { RunResult } from '../../../src/pipeline/result.js'

const run: NoticeRun = {
  app: 'shop',
  command: 'deploy',
  actor: 'octocat',
  runUrl: 'https://github.com/acme/shop/actions/runs/42',
  commit: 'abc1234',
  hosts: ['web-1', 'web-2'],
  started: '2026-12-01T10:30:00.000Z'
}

/** A deploy whose verify failed on web-2 and was rolled back on both hosts (exit 4). */
const rolledBack: RunResult = {
  command: 'deploy',
  status: 'rolled-back',
  exitCode: 4,
  release: '20261201-103000-abc1234',
  previousRelease: '20261130-090000-def5678',
  rolledBack: true,
  backupName: 'shop-20261201-103001.sql.gz',
  error: {
    stage: 'verify',
    host: 'web-2',
    message: 'health check GET http://127.0.0.1:8080/health failed: <500>'
  },
  stages: [
    { name: 'preflight', status: 'ok', duration_s: 0.5 },
    { name: 'verify', status: 'failed', duration_s: 30.25, host: 'web-2', error: 'health check' },
    { name: 'switch', status: 'undone', duration_s: 1 }
  ],
  hosts: ['web-1', 'web-2'],
  logFile: '/runner/safe-deploy-logs/deploy-20261201-103000.log',
  started: '2026-12-01T10:30:00.000Z',
  finished: '2026-12-01T10:30:42.000Z',
  durationS: 42,
  verdict:
    'DEPLOYMENT FAILED at verify on web-2: health check GET http://127.0.0.1:8080/health failed: <500>. ROLLED BACK (42.0 s)'
}

const notice = finishNotice(run, rolledBack)

describe('the notice', () => {
  test.each([
    ['deploy', 0, 'success'],
    ['deploy', 4, 'rollback'],
    ['deploy', 3, 'failure'],
    ['deploy', 5, 'failure'],
    ['deploy', 1, 'failure'],
    ['rollback', 0, 'rollback'],
    ['rollback', 4, 'rollback'],
    ['rollback', 3, 'failure'],
    ['rollback', 5, 'failure']
  ] as [RunResult['command'], number, string][])('%s exit %d is a %s event', (command, exitCode, event) => {
    expect(eventOf({ command, exitCode })).toBe(event)
  })

  test('without hostResults: every host with the run outcome, the failed one with its stage and error', () => {
    expect(notice.hosts).toEqual([
      { name: 'web-1', result: 'rolled-back', stage: undefined, error: undefined },
      {
        name: 'web-2',
        result: 'rolled-back',
        stage: 'verify',
        error: 'health check GET http://127.0.0.1:8080/health failed: <500>'
      }
    ])
  })

  test('with hostResults (the fleet report): those, per host', () => {
    const n = finishNotice(run, {
      ...rolledBack,
      hostResults: [
        {
          name: 'web-1',
          roles: [],
          before: 'A',
          after: 'A',
          stage: 'verify',
          durationS: 3.25,
          result: 'rolled-back'
        },
        {
          name: 'web-2',
          roles: [],
          before: 'A',
          after: 'A',
          stage: 'verify',
          durationS: 4,
          result: 'rolled-back',
          error: 'no answer'
        }
      ]
    })
    expect(n.hosts).toEqual([
      {
        name: 'web-1',
        result: 'rolled-back',
        before: 'A',
        after: 'A',
        stage: 'verify',
        durationS: 3.25,
        error: undefined
      },
      {
        name: 'web-2',
        result: 'rolled-back',
        before: 'A',
        after: 'A',
        stage: 'verify',
        durationS: 4,
        error: 'no answer'
      }
    ])
  })
})

describe('telegram', () => {
  const channel = {
    token: '123456:AAE-secret-token',
    chat_id: -100200300,
    thread_id: 7,
    api_url: 'http://127.0.0.1:9/',
    on: [],
    timeout: 10_000
  }

  test('POST <api_url>/bot<token>/sendMessage, HTML parse mode, every value escaped', () => {
    const r = telegramRequest(channel, notice)
    expect(r.url).toBe('http://127.0.0.1:9/bot123456:AAE-secret-token/sendMessage')
    expect(r.headers['content-type']).toBe('application/json')
    expect(JSON.parse(r.body)).toEqual({
      chat_id: -100200300,
      message_thread_id: 7,
      parse_mode: 'HTML',
      disable_web_page_preview: true,
      text: [
        '<b>↩️ shop: deploy failed and was rolled back</b>',
        '<b>app</b>: <code>shop</code>',
        '<b>command</b>: <code>deploy</code>',
        '<b>release</b>: <code>20261201-103000-abc1234</code>',
        '<b>previous</b>: <code>20261130-090000-def5678</code>',
        '<b>commit</b>: <code>abc1234</code>',
        '<b>actor</b>: <code>octocat</code>',
        '<b>duration</b>: <code>42.0 s</code>',
        '<b>backup</b>: <code>shop-20261201-103001.sql.gz</code>',
        '<b>failed at</b>: <code>verify on web-2</code>',
        '<b>log</b>: <code>/runner/safe-deploy-logs/deploy-20261201-103000.log</code>',
        '<b>hosts</b>:',
        '• web-1: rolled-back',
        '• web-2: rolled-back at verify: health check GET http://127.0.0.1:8080/health failed: &lt;500&gt;',
        '<i>DEPLOYMENT FAILED at verify on web-2: health check GET http://127.0.0.1:8080/health failed: &lt;500&gt;. ROLLED BACK (42.0 s)</i>',
        '<a href="https://github.com/acme/shop/actions/runs/42">Open the run</a>'
      ].join('\n')
    })
  })

  test('no thread: no message_thread_id; the start message', () => {
    const body = JSON.parse(telegramRequest({ ...channel, thread_id: undefined }, startNotice(run)).body)
    expect(body).toEqual({
      chat_id: -100200300,
      parse_mode: 'HTML',
      disable_web_page_preview: true,
      text: [
        '<b>🚀 shop: deploy started</b>',
        '<b>app</b>: <code>shop</code>',
        '<b>command</b>: <code>deploy</code>',
        '<b>commit</b>: <code>abc1234</code>',
        '<b>actor</b>: <code>octocat</code>',
        '<b>hosts</b>:',
        '• web-1',
        '• web-2',
        '<i>deploy of shop to web-1, web-2 started by octocat</i>',
        '<a href="https://github.com/acme/shop/actions/runs/42">Open the run</a>'
      ].join('\n')
    })
  })

  test('escapeHtml: & < > "', () => {
    expect(escapeHtml('a&b <i>"x"</i>')).toBe('a&amp;b &lt;i&gt;&quot;x&quot;&lt;/i&gt;')
  })
})

test('slack: blocks and a text fallback', () => {
  const r = slackRequest({ webhook: 'http://127.0.0.1:9/services/T/B/x', on: [], timeout: 10_000 }, notice)
  expect(r.url).toBe('http://127.0.0.1:9/services/T/B/x')
  expect(JSON.parse(r.body)).toEqual({
    text: `↩️ shop: deploy failed and was rolled back: ${rolledBack.verdict}`,
    blocks: [
      {
        type: 'header',
        text: { type: 'plain_text', text: '↩️ shop: deploy failed and was rolled back', emoji: true }
      },
      {
        type: 'section',
        fields: [
          { type: 'mrkdwn', text: '*app*\nshop' },
          { type: 'mrkdwn', text: '*command*\ndeploy' },
          { type: 'mrkdwn', text: '*release*\n20261201-103000-abc1234' },
          { type: 'mrkdwn', text: '*previous*\n20261130-090000-def5678' },
          { type: 'mrkdwn', text: '*commit*\nabc1234' },
          { type: 'mrkdwn', text: '*actor*\noctocat' },
          { type: 'mrkdwn', text: '*duration*\n42.0 s' },
          { type: 'mrkdwn', text: '*backup*\nshop-20261201-103001.sql.gz' },
          { type: 'mrkdwn', text: '*failed at*\nverify on web-2' },
          { type: 'mrkdwn', text: '*log*\n/runner/safe-deploy-logs/deploy-20261201-103000.log' }
        ]
      },
      {
        type: 'section',
        text: {
          type: 'mrkdwn',
          text: '*hosts*\n• web-1: rolled-back\n• web-2: rolled-back at verify: health check GET http://127.0.0.1:8080/health failed: &lt;500&gt;'
        }
      },
      {
        type: 'context',
        elements: [
          {
            type: 'mrkdwn',
            text: 'DEPLOYMENT FAILED at verify on web-2: health check GET http://127.0.0.1:8080/health failed: &lt;500&gt;. ROLLED BACK (42.0 s)'
          }
        ]
      },
      {
        type: 'actions',
        elements: [
          {
            type: 'button',
            text: { type: 'plain_text', text: 'Open the run' },
            url: 'https://github.com/acme/shop/actions/runs/42'
          }
        ]
      }
    ]
  })
})

test('discord: one embed, coloured by the verdict (rollback: amber), markdown escaped', () => {
  const r = discordRequest(
    { webhook: 'http://127.0.0.1:9/api/webhooks/1/x', on: [], timeout: 10_000 },
    notice
  )
  expect(r.url).toBe('http://127.0.0.1:9/api/webhooks/1/x')
  expect(JSON.parse(r.body)).toEqual({
    username: 'safe-deploy',
    allowed_mentions: { parse: [] },
    embeds: [
      {
        title: '↩️ shop: deploy failed and was rolled back',
        description:
          'DEPLOYMENT FAILED at verify on web-2: health check GET http://127.0.0.1:8080/health failed: <500>. ROLLED BACK (42.0 s)',
        color: 0xf59e0b,
        url: 'https://github.com/acme/shop/actions/runs/42',
        timestamp: '2026-12-01T10:30:42.000Z',
        fields: [
          { name: 'app', value: 'shop', inline: true },
          { name: 'command', value: 'deploy', inline: true },
          { name: 'release', value: '20261201-103000-abc1234', inline: true },
          { name: 'previous', value: '20261130-090000-def5678', inline: true },
          { name: 'commit', value: 'abc1234', inline: true },
          { name: 'actor', value: 'octocat', inline: true },
          { name: 'duration', value: '42.0 s', inline: true },
          { name: 'backup', value: 'shop-20261201-103001.sql.gz', inline: true },
          { name: 'failed at', value: 'verify on web-2', inline: false },
          {
            name: 'log',
            value: '/runner/safe-deploy-logs/deploy-20261201-103000.log',
            inline: false
          },
          {
            name: 'hosts',
            value:
              'web-1: rolled-back\nweb-2: rolled-back at verify: health check GET http://127.0.0.1:8080/health failed: <500>',
            inline: false
          }
        ]
      }
    ]
  })
  const colors = ['success', 'failure', 'start'].map(
    event =>
      JSON.parse(
        discordRequest({ webhook: 'http://x/', on: [], timeout: 1 }, { ...notice, event: event as 'success' })
          .body
      ).embeds[0].color
  )
  expect(colors).toEqual([0x2eb67d, 0xe01e5a, 0x3b82f6])
})

test('teams: a message with one Adaptive Card (Workflows webhook)', () => {
  const r = teamsRequest(
    { webhook: 'https://prod-1.westeurope.logic.azure.com/workflows/x', on: [], timeout: 10_000 },
    notice
  )
  expect(JSON.parse(r.body)).toEqual({
    type: 'message',
    attachments: [
      {
        contentType: 'application/vnd.microsoft.card.adaptive',
        contentUrl: null,
        content: {
          $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
          type: 'AdaptiveCard',
          version: '1.4',
          body: [
            {
              type: 'TextBlock',
              text: '↩️ shop: deploy failed and was rolled back',
              weight: 'Bolder',
              size: 'Medium',
              color: 'Warning',
              wrap: true
            },
            {
              type: 'FactSet',
              facts: [
                { title: 'app', value: 'shop' },
                { title: 'command', value: 'deploy' },
                { title: 'release', value: '20261201-103000-abc1234' },
                { title: 'previous', value: '20261130-090000-def5678' },
                { title: 'commit', value: 'abc1234' },
                { title: 'actor', value: 'octocat' },
                { title: 'duration', value: '42.0 s' },
                { title: 'backup', value: 'shop-20261201-103001.sql.gz' },
                { title: 'failed at', value: 'verify on web-2' },
                { title: 'log', value: '/runner/safe-deploy-logs/deploy-20261201-103000.log' }
              ]
            },
            {
              type: 'TextBlock',
              text: '- web-1: rolled-back\n- web-2: rolled-back at verify: health check GET http://127.0.0.1:8080/health failed: <500>',
              wrap: true
            },
            { type: 'TextBlock', text: rolledBack.verdict, wrap: true, isSubtle: true }
          ],
          actions: [
            {
              type: 'Action.OpenUrl',
              title: 'Open the run',
              url: 'https://github.com/acme/shop/actions/runs/42'
            }
          ]
        }
      }
    ]
  })
})

test('webhook: the notice as JSON, signed with HMAC-SHA256 of the raw body, extra headers', () => {
  const r = webhookRequest(
    {
      url: 'http://127.0.0.1:9/hook',
      secret: 'hook-secret-1',
      headers: { 'X-Team': 'ops' },
      on: [],
      timeout: 10_000
    },
    notice
  )
  expect(r.headers).toEqual({
    'content-type': 'application/json',
    'user-agent': 'safe-deploy',
    'x-team': 'ops',
    'x-safe-deploy-event': 'rollback',
    'x-safe-deploy-signature': `sha256=${createHmac('sha256', 'hook-secret-1').update(r.body).digest('hex')}`
  })
  expect(JSON.parse(r.body)).toEqual({
    event: 'rollback',
    app: 'shop',
    command: 'deploy',
    status: 'rolled-back',
    exit_code: 4,
    release: '20261201-103000-abc1234',
    previous_release: '20261130-090000-def5678',
    commit: 'abc1234',
    actor: 'octocat',
    run_url: 'https://github.com/acme/shop/actions/runs/42',
    hosts: [
      {
        name: 'web-1',
        result: 'rolled-back',
        before: null,
        after: null,
        stage: null,
        duration_s: null,
        error: null
      },
      {
        name: 'web-2',
        result: 'rolled-back',
        before: null,
        after: null,
        stage: 'verify',
        duration_s: null,
        error: 'health check GET http://127.0.0.1:8080/health failed: <500>'
      }
    ],
    duration_s: 42,
    stages: [
      { name: 'preflight', status: 'ok', duration_s: 0.5 },
      { name: 'verify', status: 'failed', duration_s: 30.25 },
      { name: 'switch', status: 'undone', duration_s: 1 }
    ],
    backup: 'shop-20261201-103001.sql.gz',
    log_file: '/runner/safe-deploy-logs/deploy-20261201-103000.log',
    error: {
      stage: 'verify',
      host: 'web-2',
      message: 'health check GET http://127.0.0.1:8080/health failed: <500>'
    },
    verdict: rolledBack.verdict,
    title: '↩️ shop: deploy failed and was rolled back',
    started: '2026-12-01T10:30:00.000Z',
    finished: '2026-12-01T10:30:42.000Z'
  })
})

test('discord markdown is escaped: emphasis, code, spoilers, links; quotes, headings and lists at a line start', () => {
  const body = JSON.parse(
    discordRequest(
      { webhook: 'http://x/', on: [], timeout: 1 },
      { ...notice, verdict: '> *a* _b_ `c` ||d|| [e](f) x-y\n# h\n- i' }
    ).body
  )
  expect(body.embeds[0].description).toBe(
    '\\> \\*a\\* \\_b\\_ \\`c\\` \\|\\|d\\|\\| \\[e\\](f) x-y\n\\# h\n\\- i'
  )
})
