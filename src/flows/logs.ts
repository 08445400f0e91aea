/**
 * `safe-deploy logs`: runs logs.command inside `current` on each host and prints its lines prefixed by the
 * host (`web-1 | ...`). Read-only: no lock, no log file. With `follow`, it streams until the signal aborts
 * (Ctrl-C): the SSH channel's stdin ends and the host's REMOTE_SHELL watcher kills the command there.
 */
import { ConfigError } from '../core/exit.js'
import { errorMessage } from '../core/errors.js'
import { sh } from '../commands/quote.js'
import { script } from '../commands/command.js'
import { listReleases, parseKeyValues } from '../commands/release.js'
import { fillLogsCommand } from '../config/rules.js'
import { hookEnv } from '../host/env.js'
import { closeAll, connectAll, onEveryHost, runOn, type RunContext } from '../host/context.js'
import { escapeControls } from '../report/log.js'

export interface LogsOptions {
  /** Lines since this time (runner clock). */
  since: Date
  lines: number
  follow: boolean
  /** Where the prefixed lines go. */
  write: (line: string) => void
}

/** The command `logs` runs: logs.command (or logs.follow / command + ` -f` for --follow), filled in. */
export function logsCommand(ctx: RunContext, opts: Pick<LogsOptions, 'since' | 'lines' | 'follow'>): string {
  const logs = ctx.config.logs
  if (!logs)
    throw new ConfigError(
      'logs: needs logs.command in the config (e.g. journalctl -u shop --since {since} -n {lines}, docker compose logs --since {since} -n {lines} bot, tail -n {lines} shared/logs/app.log)'
    )
  const template = opts.follow ? (logs.follow ?? `${logs.command} -f`) : logs.command
  return fillLogsCommand(template, opts.since, opts.lines)
}

/** Returns the hosts where the command failed (empty: all printed their logs). */
export async function showLogs(ctx: RunContext, opts: LogsOptions): Promise<string[]> {
  const command = logsCommand(ctx, opts)
  const failed: string[] = []
  try {
    await connectAll(ctx)
    await onEveryHost(ctx, async s => {
      const prefix = `${s.host.name} | `
      let buf = ''
      const emit = (line: string) => opts.write(prefix + ctx.log.redactor.redact(escapeControls(line)))
      const onOutput = (chunk: string) => {
        buf += chunk
        let i: number
        while ((i = buf.indexOf('\n')) >= 0) {
          emit(buf.slice(0, i))
          buf = buf.slice(i + 1)
        }
      }
      const kv = parseKeyValues((await runOn(ctx, s, listReleases(s.layout), { stage: 'logs' })).stdout)
      s.current = kv.get('CURRENT')?.[0]?.replace(/^releases\//, '') || undefined
      const cmd = {
        label: 'logs',
        user: true,
        env: hookEnv(ctx, s, s.current ?? '', 'logs'),
        // inside current when there is one, else the deploy root (shared/ is there)
        script: script(`cd ${sh(s.layout.current)} 2>/dev/null || cd ${sh(s.layout.root)} || exit 1`, command)
      }
      try {
        const r = await runOn(ctx, s, cmd, {
          stage: 'logs',
          allowFail: true,
          timeoutMs: opts.follow ? 0 : undefined,
          onOutput
        })
        if (buf) emit(buf)
        if (r.code !== 0 && !ctx.signal.aborted) {
          failed.push(s.host.name)
          opts.write(`${prefix}(logs command exited ${r.code})`)
        }
      } catch (e) {
        if (buf) emit(buf)
        // Ctrl-C ends --follow: that is how it is meant to stop
        if (ctx.signal.aborted) return
        failed.push(s.host.name)
        opts.write(`${prefix}(${errorMessage(e)})`)
      }
    })
  } finally {
    await closeAll(ctx)
  }
  return failed
}
