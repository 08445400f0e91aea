/** `notify:` in the config: defaults, refusals (exit 2 before anything connects), and what is a secret. */
import { describe, expect, test } from '@jest/globals'
import { validateConfig } from '../../../src/config/load.js'
import { ConfigError } from '../../../src/core/exit.js'

const base = { app: 'shop', path: '/srv/shop', hosts: [{ local: true }] }
const load = (notify: unknown, env: NodeJS.ProcessEnv = {}) =>
  validateConfig({ ...base, notify }, '/tmp/safe-deploy.yml', {}, env)
const refusal = (notify: unknown, env: NodeJS.ProcessEnv = {}) => {
  try {
    load(notify, env)
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    return (e as Error).message
  }
  throw new Error('expected the config to be refused')
}

describe('notify:', () => {
  test('none by default', () => {
    expect(validateConfig(base, '/tmp/safe-deploy.yml', {}, {}).config.notify).toEqual([])
  })

  test('defaults: on success, failure, rollback; 10 s; the public Bot API', () => {
    const { config } = load([{ telegram: { token: 'env:TELEGRAM_TOKEN', chat_id: '-100123' } }], {
      TELEGRAM_TOKEN: '123456:AAE-token'
    })
    expect(config.notify).toEqual([
      {
        telegram: {
          token: '123456:AAE-token',
          chat_id: '-100123',
          api_url: 'https://api.telegram.org',
          on: ['success', 'failure', 'rollback'],
          timeout: 10_000
        }
      }
    ])
  })

  test('tokens, webhook URLs, webhook secrets and env: header values are secrets, however given', () => {
    const loaded = load(
      [
        { telegram: { token: '123456:inline-token', chat_id: 1 } },
        { slack: { webhook: 'env:SLACK_WEBHOOK' } },
        { discord: { webhook: 'https://discord.com/api/webhooks/1/discord-secret' } },
        { teams: { webhook: 'https://prod.westeurope.logic.azure.com/workflows/teams-secret' } },
        {
          webhook: {
            url: 'https://hooks.example.com/deploys',
            secret: 'env:HOOK_SECRET',
            headers: { Authorization: 'env:HOOK_AUTH', 'X-Team': 'ops' },
            on: ['start', 'failure'],
            timeout: '3s'
          }
        }
      ],
      {
        SLACK_WEBHOOK: 'https://hooks.slack.com/services/T0/B0/slack-secret',
        HOOK_SECRET: 'hook-secret-value',
        HOOK_AUTH: 'Bearer hook-auth-value'
      }
    )
    expect(loaded.secrets).toEqual(
      expect.arrayContaining([
        '123456:inline-token',
        'https://hooks.slack.com/services/T0/B0/slack-secret',
        'https://discord.com/api/webhooks/1/discord-secret',
        'https://prod.westeurope.logic.azure.com/workflows/teams-secret',
        'hook-secret-value',
        'Bearer hook-auth-value'
      ])
    )
    expect(loaded.secrets).not.toContain('ops')
    expect(loaded.config.notify[4]).toMatchObject({ webhook: { on: ['start', 'failure'], timeout: 3000 } })
  })

  test.each([
    'https://contoso.webhook.office.com/webhookb2/abc@def/IncomingWebhook/123/456',
    'https://outlook.office.com/webhook/abc/IncomingWebhook/123'
  ])('an Office 365 connector URL for Teams is refused: retired (%s)', url => {
    expect(refusal([{ teams: { webhook: url } }])).toMatch(
      /notify\[0\]\.teams\.webhook: this is an Office 365 connector URL \(\*\.webhook\.office\.com\), which Microsoft retired; create a Teams Workflows webhook/
    )
  })

  test('an unset variable is refused, naming the key', () => {
    expect(refusal([{ slack: { webhook: 'env:SLACK_WEBHOOK' } }])).toMatch(
      /notify\[0\]\.slack\.webhook: environment variable SLACK_WEBHOOK is not set/
    )
  })

  test.each([
    [{ telegram: { token: 'abcdef', chat_id: 1, timeout: '30s' } }, /expected a duration up to 10s/],
    [{ telegram: { token: 'abcdef', chat_id: 1, on: ['deployed'] } }, /notify\[0\]\.telegram\.on\[0\]/],
    [{ slack: { webhook: 'hooks.slack.com/x' } }, /expected an http:\/\/ or https:\/\/ URL/],
    [{ webhook: { url: 'https://x.example/h' } }, /notify\[0\]\.webhook\.secret/],
    [{ email: { to: 'ops@example.com' } }, /notify\[0\]/],
    [
      { telegram: { token: 'abc', chat_id: 1 } },
      /notify\[0\]\.telegram\.token: the secret is 3 characters long/
    ]
  ])('refused: %j', (channel, message) => {
    expect(refusal([channel])).toMatch(message)
  })
})
