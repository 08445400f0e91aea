import type { HttpCheck } from '../config/schema.js'
import { heartbeatProbe, httpProbe, httpProbeLoop, parseProbe, parseProbeLoop } from '../commands/health.js'
import { inRelease, parseKeyValues } from '../commands/release.js'
import { fillLogsCommand, logScan } from '../config/rules.js'
import { lastLines, runOn, type HostSession, type RunContext } from '../host/context.js'
import { StageError, errorMessage } from '../core/errors.js'
import { hookEnv } from '../host/env.js'
import { forHost } from './roles.js'

export const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(new Error('interrupted'))
    // the listener goes when the timer fires: a long run's many sleeps must not pile up listeners
    const onAbort = () => (clearTimeout(t), reject(new Error('interrupted')))
    const t = setTimeout(() => (signal.removeEventListener('abort', onAbort), resolve()), ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })

export function httpChecks(ctx: RunContext): HttpCheck[] {
  const http = ctx.config.verify.http
  return http === undefined ? [] : Array.isArray(http) ? http : [http]
}

/** `{host}` in a URL becomes the host's address: one check for many hosts, e.g. from the runner. */
function urlFor(check: HttpCheck, s: HostSession): string {
  const address = s.host.kind === 'local' ? '127.0.0.1' : s.host.address
  return check.url.replace(/\{host\}/g, () => address)
}

async function probe(ctx: RunContext, s: HostSession, check: HttpCheck, stage: string) {
  const url = urlFor(check, s)
  if (check.from === 'runner' && ctx.dryRun) {
    ctx.dryRun.runner(
      `GET ${url}`,
      `(from the runner: expect HTTP ${check.expect_status}${check.contains === undefined ? '' : ` containing "${check.contains}"`})`,
      s.host.name
    )
    return { status: check.expect_status, body: check.contains ?? '' }
  }
  if (check.from === 'runner') {
    try {
      const res = await fetch(url, {
        headers: check.headers,
        signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(check.timeout)])
      })
      return { status: res.status, body: await res.text() }
    } catch (e) {
      return { status: 0, body: errorMessage(e) }
    }
  }
  const r = await runOn(ctx, s, httpProbe(url, check.timeout, check.headers), {
    stage,
    allowFail: true,
    timeoutMs: check.timeout + 10_000
  })
  if (r.code === 127) throw new StageError(stage, `${r.stderr.trim()} (${s.host.name})`, s.host.name)
  return parseProbe(r.stdout)
}

function describe(answer: { status: number; body: string }): string {
  if (answer.status === 0) return 'no answer (connection refused or timed out)'
  const body = answer.body.trim().replace(/\s+/g, ' ').slice(0, 120)
  return `HTTP ${answer.status}${body ? ` "${body}"` : ''}`
}

/** One HTTP check with retries: passes on the expected status (and text, when `contains` is set). */
async function runHttpCheck(
  ctx: RunContext,
  s: HostSession,
  check: HttpCheck,
  stage: string,
  retries = check.retries
): Promise<void> {
  let last = { status: 0, body: '' }
  if (check.from === 'host') {
    // the retry loop runs on the host: one round trip however many attempts
    const loop = httpProbeLoop({
      url: urlFor(check, s),
      timeoutMs: check.timeout,
      headers: check.headers,
      retries,
      intervalMs: check.interval,
      expectStatus: check.expect_status,
      contains: check.contains
    })
    const r = await runOn(ctx, s, loop, {
      stage,
      allowFail: true,
      timeoutMs: retries * (check.timeout + check.interval) + 30_000
    })
    if (r.code === 127) throw new StageError(stage, `${r.stderr.trim()} (${s.host.name})`, s.host.name)
    const result = parseProbeLoop(r.stdout)
    if (result.passed) return
    last = result
    retries = result.attempts || retries
  }
  for (let attempt = 1; check.from === 'runner' && attempt <= retries; attempt++) {
    last = await probe(ctx, s, check, stage)
    const statusOk = last.status === check.expect_status
    const bodyOk = check.contains === undefined || last.body.includes(check.contains)
    if (statusOk && bodyOk) {
      ctx.log.info(
        `GET ${urlFor(check, s)}: HTTP ${last.status} (attempt ${attempt}/${retries})`,
        s.host.name
      )
      return
    }
    if (attempt < retries) {
      ctx.log.info(
        `GET ${urlFor(check, s)}: ${describe(last)}; attempt ${attempt}/${retries}, retrying in ${check.interval / 1000} s`,
        s.host.name
      )
      await sleep(check.interval, ctx.signal)
    }
  }
  const wanted = `HTTP ${check.expect_status}${check.contains !== undefined ? ` containing "${check.contains}"` : ''}`
  throw new StageError(
    stage,
    `health check GET ${urlFor(check, s)} from ${check.from === 'runner' ? 'the runner' : s.host.name} failed after ${retries} attempt${retries === 1 ? '' : 's'}: expected ${wanted}, last answer ${describe(last)}`,
    s.host.name
  )
}

/** Runs every configured check against `release` on one host. */
export async function verifyHost(
  run: RunContext,
  s: HostSession,
  release: string,
  stage: string,
  retries?: number
): Promise<void> {
  // the host's own checks (its role's verify, else the top-level one)
  const ctx = forHost(run, s)
  for (const check of httpChecks(ctx)) await runHttpCheck(ctx, s, check, stage, retries ?? check.retries)
  await checkHeartbeat(ctx, s, release, stage)
  const v = ctx.config.verify
  const commands = v.command === undefined ? [] : Array.isArray(v.command) ? v.command : [v.command]
  for (const command of commands) {
    const r = await runOn(
      ctx,
      s,
      inRelease(s.layout, release, 'verify command', command, hookEnv(ctx, s, release, stage)),
      {
        stage,
        allowFail: true
      }
    )
    if (r.code !== 0) {
      const out = lastLines(r.stderr || r.stdout, 3)
      throw new StageError(
        stage,
        `verify command \`${command}\` failed on ${s.host.name} (exit ${r.code})${out ? `: ${out}` : ''}`,
        s.host.name
      )
    }
  }
}

/** The log command's output (and stderr) on one host since the run started (verify.logs), or undefined. */
async function readLogs(
  run: RunContext,
  s: HostSession,
  release: string,
  stage: string
): Promise<{ lines: string[]; failOn: string[] } | undefined> {
  const ctx = forHost(run, s)
  const scan = logScan(ctx.config)
  if (!scan) return undefined
  const command = fillLogsCommand(scan.template, ctx.startedAt, 1000)
  const r = await runOn(
    ctx,
    s,
    inRelease(s.layout, release, 'log scan', command, hookEnv(ctx, s, release, stage)),
    {
      stage,
      allowFail: true
    }
  )
  if (r.code !== 0) {
    ctx.log.warn(`log scan command exited ${r.code}: ${lastLines(r.stderr, 2)}`, s.host.name)
  }
  // docker compose logs and journalctl may print to either stream
  return { lines: `${r.stdout}\n${r.code === 0 ? r.stderr : ''}`.split('\n'), failOn: scan.failOn }
}

/** Scans the logs since the run started for fatal patterns (verify.logs; see logScan for its defaults). */
export async function scanLogs(
  run: RunContext,
  s: HostSession,
  release: string,
  stage: string
): Promise<void> {
  // the host's own log scan (its role's verify, else the top-level one)
  const ctx = forHost(run, s)
  const logs = await readLogs(ctx, s, release, stage)
  if (!logs) return
  const hits = logs.lines.filter(line => logs.failOn.some(p => line.includes(p)))
  if (hits.length) {
    throw new StageError(
      stage,
      `the logs on ${s.host.name} show ${hits.length} line(s) matching ${logs.failOn.join('|')}: ${hits.slice(0, 3).join(' / ').slice(0, 400)}`,
      s.host.name
    )
  }
  ctx.log.info(`log scan: no line matches ${logs.failOn.join(', ')}`, s.host.name)
}

/** `; last log lines on <host>:` and the last lines of the logs (verify.logs), or '' without any. */
async function logExcerpt(ctx: RunContext, s: HostSession, release: string, stage: string): Promise<string> {
  let text: string | undefined
  try {
    text = (await readLogs(ctx, s, release, stage))?.lines.join('\n')
  } catch {
    text = undefined
  }
  return text?.trim() ? `; last log lines on ${s.host.name}:\n${lastLines(text, 12)}` : ''
}

/**
 * A check failed on its first round (the release never passed): the error, with the last lines of the logs
 * (verify.logs) when there are any, so a bot that crashed on start shows its traceback.
 */
export async function failedChecks(
  ctx: RunContext,
  s: HostSession,
  release: string,
  stage: string,
  error: unknown
): Promise<unknown> {
  if (!(error instanceof StageError)) return error
  const excerpt = await logExcerpt(ctx, s, release, stage)
  return excerpt
    ? new StageError(error.stage, `${error.message}${excerpt}`, error.host, error.exitCode)
    : error
}

/**
 * The check after verify.window failed: the app had passed, then stopped answering. Says so, with the last
 * lines of the logs (verify.logs) when there are any: the exception line of a traceback comes first.
 */
export async function stoppedAnswering(
  ctx: RunContext,
  s: HostSession,
  release: string,
  stage: string,
  windowMs: number,
  error: unknown
): Promise<StageError> {
  const excerpt = await logExcerpt(ctx, s, release, stage)
  return new StageError(
    stage,
    `the app passed its checks, then stopped answering within verify.window (${windowMs / 1000} s): ${errorMessage(error)}${excerpt}`,
    s.host.name
  )
}

/**
 * verify.heartbeat: the file must have been touched after `current` was last switched (so not by the
 * instance that served before) and within max_age, both by the host's clock. Waits up to max_age for it.
 */
async function checkHeartbeat(
  ctx: RunContext,
  s: HostSession,
  release: string,
  stage: string
): Promise<void> {
  const hb = ctx.config.verify.heartbeat
  if (!hb) return
  const maxAge = Math.max(1, Math.ceil(hb.max_age / 1000))
  const r = await runOn(ctx, s, heartbeatProbe(s.layout, release, hb.file, maxAge), {
    stage,
    allowFail: true,
    timeoutMs: (maxAge + 30) * 1000
  })
  const kv = parseKeyValues(r.stdout)
  const state = kv.get('HEARTBEAT')?.[0]
  if (state === 'fresh') {
    ctx.log.info(`heartbeat ${hb.file}: touched ${kv.get('AGE')?.[0] ?? '?'} s ago`, s.host.name)
    return
  }
  const why =
    state === 'missing'
      ? `${hb.file} does not exist`
      : state === 'old'
        ? `${hb.file} was last touched ${kv.get('AGE')?.[0] ?? '?'} s ago, before the switch (by the instance that served before)`
        : state === 'stale'
          ? `${hb.file} was last touched ${kv.get('AGE')?.[0] ?? '?'} s ago (max_age ${maxAge} s)`
          : `the heartbeat probe failed (exit ${r.code}): ${lastLines(r.stderr || r.stdout, 2)}`
  throw new StageError(stage, `heartbeat check failed on ${s.host.name}: ${why}`, s.host.name)
}

/** Whether checks are configured: for host `s` (its roles' verify), or without one for any host of the run. */
export function hasChecks(ctx: RunContext, s?: HostSession): boolean {
  if (!s && ctx.sessions.some(h => hasChecks(ctx, h))) return true
  const c = s ? forHost(ctx, s) : ctx
  return (
    httpChecks(c).length > 0 ||
    !!c.config.verify.command ||
    !!logScan(c.config) ||
    !!c.config.verify.heartbeat
  )
}
