import type { NotifyChannelConfig } from '../config/notify.js'
import type { RunContext } from '../host/context.js'
import type { RunEvent, RunSubscriber } from '../engine/events.js'
import type { RunCommand } from '../pipeline/result.js'
import { errorMessage } from '../core/errors.js'
import { kindOf, requestFor, settingsOf } from './channels.js'
import { deliver } from './deliver.js'
import { finishNotice, startNotice, type Notice, type NoticeRun } from './notice.js'

/** `telegram` or, when the config has two of a kind, `telegram (notify[1])`: for the warning lines. */
function labels(channels: readonly NotifyChannelConfig[]): string[] {
  const kinds = channels.map(kindOf)
  return kinds.map((k, i) => (kinds.filter(x => x === k).length > 1 ? `${k} (notify[${i}])` : k))
}

/**
 * The run's notifications (`notify:` in the config): a subscriber to its events. `start` is sent when the
 * first stage starts (the commit is known by then) without holding the run up; the end (`success`,
 * `failure`, `rollback`) is sent on `run-finished`, after the start message of the same channel. Each channel
 * has its time limit (default and at most 10 s, retries included) and the run's end never waits longer; a
 * channel that fails is one warning line, redacted, and never changes the run's outcome or exit code.
 */
export function notifications(ctx: RunContext, command: RunCommand): RunSubscriber[] {
  const channels = ctx.config.notify ?? []
  if (!channels.length) return []
  const names = labels(channels)
  const redact = (t: string) => ctx.log.redactor.redact(t)
  const pending = new Map<number, Promise<void>>()
  let started: string | undefined
  let startSent = false

  const run = (): NoticeRun => ({
    app: ctx.config.app,
    command,
    actor: ctx.actor.who,
    runUrl: ctx.actor.run,
    commit: ctx.actor.commit,
    hosts: ctx.loaded.hosts.map(h => h.name),
    started: started ?? ctx.startedAt.toISOString()
  })

  /** Sends `notice` on channel i, after what it is still sending; resolves by its deadline, never rejects. */
  const send = (i: number, notice: Notice): Promise<void> => {
    const channel = channels[i] as NotifyChannelConfig
    const { timeout } = settingsOf(channel)
    const deadline = Date.now() + timeout
    const before = pending.get(i) ?? Promise.resolve()
    let timer: NodeJS.Timeout | undefined
    const limit = new Promise<void>(resolve => {
      timer = setTimeout(() => {
        ctx.log.warn(
          `notification to ${names[i]} (${notice.event}) gave no answer within ${timeout / 1000} s; the ${command} goes on`
        )
        resolve()
      }, timeout + 250)
    })
    const attempt = before
      .then(() => deliver(requestFor(channel, notice), deadline, redact))
      .then(
        d => {
          if (d.attempts > 1)
            ctx.log.info(`notification to ${names[i]} (${notice.event}) sent after ${d.attempts} attempts`)
        },
        e =>
          ctx.log.warn(
            `notification to ${names[i]} (${notice.event}) failed: ${redact(errorMessage(e))}; the ${command} goes on`
          )
      )
    const done = Promise.race([attempt, limit]).finally(() => clearTimeout(timer))
    pending.set(i, done)
    return done
  }

  const wanting = (event: Notice['event']) =>
    channels.flatMap((c, i) => (settingsOf(c).on.includes(event) ? [i] : []))

  return [
    {
      name: 'the notifications',
      on: async (e: RunEvent) => {
        if (e.type === 'run-started') started = e.started
        else if (e.type === 'stage-started' && !startSent) {
          startSent = true
          const notice = startNotice(run())
          // not awaited: a slow chat must not hold the deploy up; the end waits for it (within its limit)
          for (const i of wanting('start')) void send(i, notice)
        } else if (e.type === 'run-finished') {
          const notice = finishNotice(run(), e.result)
          const ends = wanting(notice.event).map(i => send(i, notice))
          await Promise.all([...ends, ...pending.values()])
        }
      }
    }
  ]
}
