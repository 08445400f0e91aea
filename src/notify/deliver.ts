import type { NotifyRequest } from './channels.js'
import { errorMessage } from '../core/errors.js'

/** How a request is retried: 3 attempts, on a network error, a 5xx or a 429. */
export const ATTEMPTS = 3
/** The wait before the 2nd and 3rd attempts, unless the answer says Retry-After. */
const BACKOFF_MS = [500, 1500]
/** The longest Retry-After honoured; a longer one ends the retries (the deadline would pass anyway). */
export const MAX_RETRY_AFTER_MS = 5_000

export interface Delivered {
  attempts: number
  status: number
}

/** A Retry-After header (seconds or an HTTP date) in milliseconds, or undefined. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return Math.round(Number(value) * 1000)
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/** What an error answer says, shortly: Telegram's `description`, Discord's `message`, or the body's start. */
function reason(text: string): string {
  try {
    const j = JSON.parse(text) as { description?: unknown; message?: unknown; error?: unknown }
    for (const v of [j.description, j.message, j.error]) if (typeof v === 'string' && v) return v
  } catch {
    /* not JSON */
  }
  const t = text.replace(/\s+/g, ' ').trim()
  return t.length > 200 ? `${t.slice(0, 199)}…` : t
}

const sleep = (ms: number) => new Promise<void>(r => setTimeout(r, ms))

/**
 * POSTs `req` until it is accepted (2xx), at most ATTEMPTS times, never past `deadline` (a Date.now() value):
 * each attempt is aborted at the deadline and no retry starts that could not finish before it. The same body
 * (and so the same signature) on every attempt. Throws an Error whose message names the URL and the last
 * answer, passed through `redact` (the URL may hold a token: Telegram's is in the path).
 */
export async function deliver(
  req: NotifyRequest,
  deadline: number,
  redact: (t: string) => string
): Promise<Delivered> {
  let last = ''
  let attempt = 0
  while (attempt < ATTEMPTS) {
    attempt++
    const left = deadline - Date.now()
    if (left <= 0) {
      last = last ? `${last}; then the time limit passed` : 'the time limit passed'
      break
    }
    let wait: number | undefined
    try {
      const res = await fetch(req.url, {
        method: 'POST',
        headers: req.headers,
        body: req.body,
        signal: AbortSignal.timeout(left),
        redirect: 'error'
      })
      const text = await res.text()
      if (res.ok) return { attempts: attempt, status: res.status }
      last = `HTTP ${res.status}${text ? `: ${reason(text)}` : ''}`
      // a 4xx other than 429 is the request's fault (a bad token, an unknown chat): retrying cannot help
      if (res.status !== 429 && res.status < 500) break
      wait = retryAfterMs(res.headers.get('retry-after'))
      if (wait !== undefined && wait > MAX_RETRY_AFTER_MS) {
        last += ` (Retry-After ${Math.round(wait / 1000)} s is longer than we wait)`
        break
      }
    } catch (e) {
      const name = (e as { name?: string }).name
      if (name === 'TimeoutError' || name === 'AbortError') {
        last = 'no answer within the time limit'
        break
      }
      // fetch's own message is `fetch failed`; what failed is its cause (`connect ECONNREFUSED 127.0.0.1:443`)
      const cause = (e as { cause?: unknown }).cause
      const why = (cause as { message?: unknown } | undefined)?.message
      last = typeof why === 'string' && why ? why : errorMessage(e)
    }
    if (attempt >= ATTEMPTS) break
    const pause = wait ?? BACKOFF_MS[attempt - 1] ?? 1500
    if (Date.now() + pause >= deadline) {
      last += '; no time left to retry'
      break
    }
    await sleep(pause)
  }
  throw new Error(redact(`POST ${req.url}: ${last} (${attempt} attempt${attempt === 1 ? '' : 's'})`))
}
