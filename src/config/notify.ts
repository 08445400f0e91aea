import { z } from 'zod'
import { parseDuration } from './duration.js'

/** The events a channel can be told: a run started, succeeded, failed, or rolled back (README "Notifications"). */
export const NOTIFY_EVENTS = ['start', 'success', 'failure', 'rollback'] as const
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number]

/** How long one channel may take, retries included; the run's end never waits longer (README "Notifications"). */
export const NOTIFY_TIMEOUT_MS = 10_000

const httpUrl = (what: string) =>
  z
    .string()
    .min(1)
    .refine(s => /^https?:\/\/[^\s/]+/.test(s) && !/[\s\0]/.test(s), {
      message: `${what}: expected an http:// or https:// URL`
    })

/** What every channel has besides where it goes: which events it is told, and its time limit. */
const common = {
  on: z
    .array(z.enum(NOTIFY_EVENTS))
    .min(1)
    .default(['success', 'failure', 'rollback'])
    .describe('The events this channel is told (default: success, failure, rollback)'),
  timeout: z
    .union([z.string(), z.number()])
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return NOTIFY_TIMEOUT_MS
      const ms = parseDuration(value)
      if (ms === undefined || ms <= 0 || ms > NOTIFY_TIMEOUT_MS) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a duration up to 10s (such as 5s), got ${JSON.stringify(value)}`
        })
        return z.NEVER
      }
      return ms
    })
    .describe('How long this channel may take, retries included (at most and by default 10s)')
}

/** The retired Office 365 connector URLs (`*.webhook.office.com`, `outlook.office.com/webhook`). */
export function isRetiredTeamsConnector(url: string): boolean {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return false
  }
  const host = u.hostname.toLowerCase()
  return (
    host === 'webhook.office.com' ||
    host.endsWith('.webhook.office.com') ||
    ((host === 'outlook.office.com' || host === 'outlook.office365.com') && u.pathname.startsWith('/webhook'))
  )
}

const telegram = z
  .object({
    token: z.string().min(1).describe('The bot token from @BotFather (use env:NAME)'),
    chat_id: z
      .union([z.string().min(1), z.number().int()])
      .describe('The chat (or channel, @name) to post to'),
    thread_id: z.number().int().optional().describe('A forum topic of the chat (message_thread_id)'),
    api_url: httpUrl('api_url')
      .default('https://api.telegram.org')
      .describe('The Bot API base URL (a self-hosted Bot API server, a test stand-in)'),
    ...common
  })
  .strict()

const slack = z
  .object({ webhook: httpUrl('webhook').describe('A Slack incoming webhook URL (use env:NAME)'), ...common })
  .strict()

const discord = z
  .object({ webhook: httpUrl('webhook').describe('A Discord channel webhook URL (use env:NAME)'), ...common })
  .strict()

const teams = z
  .object({
    webhook: httpUrl('webhook')
      .refine(u => !isRetiredTeamsConnector(u), {
        message:
          'this is an Office 365 connector URL (*.webhook.office.com), which Microsoft retired; create a Teams Workflows webhook ("Post to a channel when a webhook request is received") and use its URL'
      })
      .describe('A Teams Workflows webhook URL (use env:NAME); the old connector URLs are retired'),
    ...common
  })
  .strict()

const webhook = z
  .object({
    url: httpUrl('url').describe('Where the JSON body is POSTed'),
    secret: z
      .string()
      .min(1)
      .describe(
        'Signs the body: X-Safe-Deploy-Signature: sha256=<HMAC-SHA256 of the raw body> (use env:NAME)'
      ),
    headers: z
      .record(
        z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'expected an HTTP header name'),
        z.string().refine(v => !/[\r\n\0]/.test(v), { message: 'a header value must be one line' })
      )
      .optional()
      .describe('Extra request headers (values from env:NAME are secrets)'),
    ...common
  })
  .strict()

interface Channels {
  telegram: typeof telegram
  slack: typeof slack
  discord: typeof discord
  teams: typeof teams
  webhook: typeof webhook
}
type Kind = keyof Channels

/** One channel of `notify:`, as the code sees it: exactly one of the keys. */
export type NotifyChannelConfig = {
  [K in Kind]: { [P in K]: z.output<Channels[K]> }
}[Kind]

/**
 * One entry of `notify:`: one channel, one key. An object of optional keys rather than a union, so that a
 * mistake inside a channel is reported at its own key (`notify[0].telegram.on[0]`).
 */
export const notifyChannelSchema = z
  .object({
    telegram: telegram.optional(),
    slack: slack.optional(),
    discord: discord.optional(),
    teams: teams.optional(),
    webhook: webhook.optional()
  })
  .strict()
  .superRefine((v, ctx) => {
    const given = Object.keys(v).filter(k => v[k as Kind] !== undefined)
    if (given.length !== 1)
      ctx.addIssue({
        code: 'custom',
        message: `expected one channel per entry (telegram, slack, discord, teams or webhook), got ${given.length ? given.join(', ') : 'none'}`
      })
  })
  .transform(v => v as NotifyChannelConfig)

export const notifySchema = z
  .array(notifyChannelSchema)
  .default([])
  .describe('Where to tell the team how a deploy or rollback went: telegram, slack, discord, teams, webhook')

/** The values of a channel that are credentials however they were given: redacted everywhere. */
export function notifySecrets(channels: readonly NotifyChannelConfig[]): { where: string; value: string }[] {
  return channels.flatMap((c, i) => {
    const at = (k: string) => `notify[${i}].${k}`
    if ('telegram' in c) return [{ where: at('telegram.token'), value: c.telegram.token }]
    if ('slack' in c) return [{ where: at('slack.webhook'), value: c.slack.webhook }]
    if ('discord' in c) return [{ where: at('discord.webhook'), value: c.discord.webhook }]
    if ('teams' in c) return [{ where: at('teams.webhook'), value: c.teams.webhook }]
    return [{ where: at('webhook.secret'), value: c.webhook.secret }]
  })
}
