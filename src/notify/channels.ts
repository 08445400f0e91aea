import { createHmac } from 'node:crypto'
import type { NotifyChannelConfig, NotifyEvent } from '../config/notify.js'
import { factsOf, hostLine, titleOf, type Notice } from './notice.js'

/** One HTTP request a channel sends for a notice: built once, sent as is on every attempt. */
export interface NotifyRequest {
  url: string
  headers: Record<string, string>
  body: string
}

export type ChannelKind = 'telegram' | 'slack' | 'discord' | 'teams' | 'webhook'

export function kindOf(c: NotifyChannelConfig): ChannelKind {
  if ('telegram' in c) return 'telegram'
  if ('slack' in c) return 'slack'
  if ('discord' in c) return 'discord'
  if ('teams' in c) return 'teams'
  return 'webhook'
}

/** The settings every channel has: which events, its time limit. */
export function settingsOf(c: NotifyChannelConfig): { on: NotifyEvent[]; timeout: number } {
  const s =
    'telegram' in c
      ? c.telegram
      : 'slack' in c
        ? c.slack
        : 'discord' in c
          ? c.discord
          : 'teams' in c
            ? c.teams
            : c.webhook
  return { on: s.on, timeout: s.timeout }
}

const JSON_HEADERS = { 'content-type': 'application/json', 'user-agent': 'safe-deploy' }
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s)

/** Telegram's HTML parse mode: only &, < and > (and " inside an attribute) need escaping. */
export const escapeHtml = (s: string) =>
  s.replace(/[&<>"]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c)

/** Slack mrkdwn: &, < and > are its control characters. */
const escapeSlack = (s: string) =>
  s.replace(/[&<>]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c] ?? c)

/** Discord markdown: a backslash before each character that formats (`>`, `#`, `-` only at a line's start). */
const escapeDiscord = (s: string) => s.replace(/[\\*_~`|[\]]/g, c => `\\${c}`).replace(/^([>#-])/gm, '\\$1')

/** Per event: Discord embed colour (decimal RGB) and Teams' TextBlock colour. */
const COLOR: Record<NotifyEvent, number> = {
  start: 0x3b82f6,
  success: 0x2eb67d,
  rollback: 0xf59e0b,
  failure: 0xe01e5a
}
const TEAMS_COLOR: Record<NotifyEvent, string> = {
  start: 'Accent',
  success: 'Good',
  rollback: 'Warning',
  failure: 'Attention'
}

/** POST <api_url>/bot<token>/sendMessage, HTML parse mode (core.telegram.org/bots/api#sendmessage). */
export function telegramRequest(
  c: Extract<NotifyChannelConfig, { telegram: unknown }>['telegram'],
  n: Notice
): NotifyRequest {
  const lines = [`<b>${escapeHtml(titleOf(n))}</b>`]
  for (const f of factsOf(n)) lines.push(`<b>${escapeHtml(f.label)}</b>: <code>${escapeHtml(f.value)}</code>`)
  if (n.hosts.length) {
    lines.push('<b>hosts</b>:')
    for (const h of n.hosts) lines.push(`• ${escapeHtml(hostLine(h))}`)
  }
  lines.push(`<i>${escapeHtml(n.verdict)}</i>`)
  if (n.runUrl) lines.push(`<a href="${escapeHtml(n.runUrl)}">Open the run</a>`)
  // Telegram's limit is 4096 characters; the parts above are clipped already, the host list may be long
  let text = lines.join('\n')
  if (text.length > 4000)
    text = lines
      .slice(0, 1)
      .concat(`<i>${escapeHtml(clip(n.verdict, 3000))}</i>`)
      .join('\n')
  const body: Record<string, unknown> = {
    chat_id: c.chat_id,
    text,
    parse_mode: 'HTML',
    disable_web_page_preview: true
  }
  if (c.thread_id !== undefined) body.message_thread_id = c.thread_id
  return {
    url: `${c.api_url.replace(/\/+$/, '')}/bot${c.token}/sendMessage`,
    headers: { ...JSON_HEADERS },
    body: JSON.stringify(body)
  }
}

/** A Slack incoming webhook: Block Kit blocks, and `text` as the fallback for notifications. */
export function slackRequest(
  c: Extract<NotifyChannelConfig, { slack: unknown }>['slack'],
  n: Notice
): NotifyRequest {
  const title = titleOf(n)
  const blocks: Record<string, unknown>[] = [
    { type: 'header', text: { type: 'plain_text', text: clip(title, 150), emoji: true } },
    {
      type: 'section',
      fields: factsOf(n)
        .slice(0, 10)
        .map(f => ({ type: 'mrkdwn', text: clip(`*${f.label}*\n${escapeSlack(f.value)}`, 2000) }))
    }
  ]
  if (n.hosts.length)
    blocks.push({
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: clip(`*hosts*\n${n.hosts.map(h => `• ${escapeSlack(hostLine(h))}`).join('\n')}`, 3000)
      }
    })
  blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: clip(escapeSlack(n.verdict), 3000) }] })
  if (n.runUrl)
    blocks.push({
      type: 'actions',
      elements: [{ type: 'button', text: { type: 'plain_text', text: 'Open the run' }, url: n.runUrl }]
    })
  return {
    url: c.webhook,
    headers: { ...JSON_HEADERS },
    body: JSON.stringify({ text: `${title}: ${n.verdict}`, blocks })
  }
}

/** A Discord webhook: one embed, coloured by the verdict. */
export function discordRequest(
  c: Extract<NotifyChannelConfig, { discord: unknown }>['discord'],
  n: Notice
): NotifyRequest {
  const fields = factsOf(n).map(f => ({
    name: f.label,
    value: clip(escapeDiscord(f.value), 1024),
    inline: f.label !== 'log' && f.label !== 'failed at'
  }))
  if (n.hosts.length)
    fields.push({
      name: 'hosts',
      value: clip(n.hosts.map(h => escapeDiscord(hostLine(h))).join('\n'), 1024),
      inline: false
    })
  const embed: Record<string, unknown> = {
    title: clip(titleOf(n), 256),
    description: clip(escapeDiscord(n.verdict), 4096),
    color: COLOR[n.event],
    fields: fields.slice(0, 25),
    timestamp: n.finished ?? n.started
  }
  if (n.runUrl) embed.url = n.runUrl
  return {
    url: c.webhook,
    headers: { ...JSON_HEADERS },
    body: JSON.stringify({ username: 'safe-deploy', embeds: [embed], allowed_mentions: { parse: [] } })
  }
}

/**
 * A Teams Workflows webhook ("Post to a channel when a webhook request is received"): a message with one
 * Adaptive Card attachment. The Office 365 connector URLs are refused in the config (retired).
 */
export function teamsRequest(
  c: Extract<NotifyChannelConfig, { teams: unknown }>['teams'],
  n: Notice
): NotifyRequest {
  const body: Record<string, unknown>[] = [
    {
      type: 'TextBlock',
      text: titleOf(n),
      weight: 'Bolder',
      size: 'Medium',
      color: TEAMS_COLOR[n.event],
      wrap: true
    },
    { type: 'FactSet', facts: factsOf(n).map(f => ({ title: f.label, value: f.value })) }
  ]
  if (n.hosts.length)
    body.push({ type: 'TextBlock', text: n.hosts.map(h => `- ${hostLine(h)}`).join('\n'), wrap: true })
  body.push({ type: 'TextBlock', text: n.verdict, wrap: true, isSubtle: true })
  const card: Record<string, unknown> = {
    $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
    type: 'AdaptiveCard',
    version: '1.4',
    body
  }
  if (n.runUrl) card.actions = [{ type: 'Action.OpenUrl', title: 'Open the run', url: n.runUrl }]
  return {
    url: c.webhook,
    headers: { ...JSON_HEADERS },
    body: JSON.stringify({
      type: 'message',
      attachments: [
        { contentType: 'application/vnd.microsoft.card.adaptive', contentUrl: null, content: card }
      ]
    })
  }
}

/** The generic webhook's JSON body: the notice, keys in snake_case like history.jsonl. */
export function webhookBody(n: Notice): Record<string, unknown> {
  return {
    event: n.event,
    app: n.app,
    command: n.command,
    status: n.status ?? null,
    exit_code: n.exitCode ?? null,
    release: n.release ?? null,
    previous_release: n.previousRelease ?? null,
    commit: n.commit ?? null,
    actor: n.actor,
    run_url: n.runUrl ?? null,
    hosts: n.hosts.map(h => ({
      name: h.name,
      result: h.result ?? null,
      before: h.before ?? null,
      after: h.after ?? null,
      stage: h.stage ?? null,
      duration_s: h.durationS ?? null,
      error: h.error ?? null
    })),
    duration_s: n.durationS ?? null,
    stages: (n.stages ?? []).map(st => ({ name: st.name, status: st.status, duration_s: st.durationS })),
    backup: n.backupName ?? null,
    log_file: n.logFile ?? null,
    error: n.error ?? null,
    verdict: n.verdict,
    title: titleOf(n),
    started: n.started,
    finished: n.finished ?? null
  }
}

/** `sha256=<hex HMAC-SHA256 of the raw body>`: what X-Safe-Deploy-Signature carries. */
export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`
}

/** The generic webhook: the JSON body, signed; extra headers from the config. */
export function webhookRequest(
  c: Extract<NotifyChannelConfig, { webhook: unknown }>['webhook'],
  n: Notice
): NotifyRequest {
  const body = JSON.stringify(webhookBody(n))
  return {
    url: c.url,
    headers: {
      ...JSON_HEADERS,
      ...Object.fromEntries(Object.entries(c.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
      'x-safe-deploy-event': n.event,
      'x-safe-deploy-signature': signature(c.secret, body)
    },
    body
  }
}

/** The request a channel sends for a notice. */
export function requestFor(c: NotifyChannelConfig, n: Notice): NotifyRequest {
  if ('telegram' in c) return telegramRequest(c.telegram, n)
  if ('slack' in c) return slackRequest(c.slack, n)
  if ('discord' in c) return discordRequest(c.discord, n)
  if ('teams' in c) return teamsRequest(c.teams, n)
  return webhookRequest(c.webhook, n)
}
