/**
 * The blue-green switch (docs/blue-green.md). Per host, two ports alternate: the new release starts on the
 * idle one, must answer `health` with 200 there before any traffic moves, then the proxy's upstream file is
 * rewritten to the new port and the proxy reloaded. The old port keeps running until verify passed
 * (retire: drain, then stop), so a rollback before that is only a flip of the upstream file back.
 *
 * Per-host state for this run lives in a Map keyed by session, in closures (methods may be called detached).
 */
import {
  clearActivePort,
  onPort,
  parseBlueGreenState,
  readBlueGreenState,
  renderUpstream,
  withPort,
  writeActivePort,
  writeUpstream
} from '../commands/bluegreen.js'
import { httpProbe, httpProbeLoop, parseProbe, parseProbeLoop } from '../commands/health.js'
import { removeCurrent, switchCurrent } from '../commands/release.js'
import { combine, type RemoteCommand } from '../commands/command.js'
import type { SwitchSettings } from '../config/schema.js'
import { sleep } from './checks.js'
import { runOn, type HostSession, type RunContext } from '../host/context.js'
import { hookEnv } from '../host/env.js'
import { StageError, errorMessage } from '../core/errors.js'
import { runHook } from '../host/hook.js'
import type { SwitchStrategy } from './strategy.js'

/** Time between two health probes of the new port (on the host). */
const PROBE_INTERVAL_MS = 100

interface HostRun {
  release: string
  /** The port the new release runs on. */
  port: number
  /** The port that served before, and the release on it; undefined when none of the pair did. */
  oldPort?: number
  oldRelease?: string
  /** The state file's line before this run (restored on undo); undefined when there was none. */
  prevState?: { port: number; release: string }
  /** The upstream file's bytes before this run; undefined when it did not exist. */
  prevUpstream?: string
  /** The new port was started and we have not stopped it. */
  running: boolean
  /** The upstream file was (or may have been) rewritten: users may see the new release. */
  moved: boolean
  movedAt: number
}

/** The blue-green settings, typed and validated by the schema (its blue-green variant of `switch`). */
function settings(ctx: RunContext): SwitchSettings<'blue-green'> {
  const sw = ctx.config.switch
  // strategyFor picks this strategy only for this variant
  if (sw.strategy !== 'blue-green') throw new Error(`switch.strategy is ${sw.strategy}, not blue-green`)
  return sw
}

function address(s: HostSession): string {
  return s.host.kind === 'local' ? '127.0.0.1' : s.host.address
}

function describeAnswer(a: { status: number; body: string }): string {
  if (a.status === 0) return 'no answer (connection refused or timed out)'
  const body = a.body.trim().replace(/\s+/g, ' ').slice(0, 120)
  return `HTTP ${a.status}${body ? ` "${body}"` : ''}`
}

/** Runs `stop` for a port; failures are returned, not thrown (callers decide whether they matter). */
async function stopPort(
  ctx: RunContext,
  s: HostSession,
  release: string,
  port: number,
  stage: string,
  label?: string
): Promise<string | undefined> {
  const sw = settings(ctx)
  const cmd = onPort(s.layout, release, 'stop', sw.stop, port, hookEnv(ctx, s, release, stage))
  try {
    const r = await runOn(ctx, s, label ? { ...cmd, label } : cmd, {
      stage,
      allowFail: true
    })
    return r.code === 0 ? undefined : `stop for port ${port} exited ${r.code}`
  } catch (e) {
    return errorMessage(e)
  }
}

/** Starts `release` on `port` and waits until `health` answers 200 there, or throws. */
async function startAndGate(
  ctx: RunContext,
  s: HostSession,
  release: string,
  port: number,
  stage: string
): Promise<void> {
  const sw = settings(ctx)
  const deadline = Date.now() + sw.timeout
  await runOn(ctx, s, onPort(s.layout, release, 'start', sw.start, port, hookEnv(ctx, s, release, stage)), {
    stage,
    timeoutMs: sw.timeout
  })
  const url = withPort(sw.health, port, address(s))
  const left = Math.max(1000, deadline - Date.now())
  ctx.log.info(`waiting up to ${(left / 1000).toFixed(1)} s for GET ${url} to answer 200`, s.host.name)
  const t0 = Date.now()
  // the polling runs on the host: one round trip, and the gate sees the port answer within PROBE_INTERVAL_MS
  const loop: RemoteCommand = {
    ...httpProbeLoop({
      url,
      timeoutMs: Math.min(5000, left),
      headers: {},
      // a refused connection costs a few ms on top of the interval
      retries: Math.max(1, Math.ceil(left / (PROBE_INTERVAL_MS + 20))),
      intervalMs: PROBE_INTERVAL_MS,
      expectStatus: 200
    }),
    // the health gate: polled on the host until it answers 200
    label: `GET ${url}`,
    stream: false
  }
  let last = { status: 0, body: '' }
  try {
    const r = await runOn(ctx, s, loop, { stage, allowFail: true, timeoutMs: left + 10_000 })
    if (r.code === 127) throw new StageError(stage, `${r.stderr.trim()} (${s.host.name})`, s.host.name)
    const result = parseProbeLoop(r.stdout)
    if (result.passed) {
      ctx.log.info(
        `port ${port} is healthy: GET ${url}: HTTP 200 after ${((Date.now() - t0) / 1000).toFixed(1)} s (${result.attempts} probe(s))`,
        s.host.name
      )
      return
    }
    last = result
  } catch (e) {
    if (ctx.signal.aborted || (e instanceof StageError && /neither curl nor wget/.test(e.message))) throw e
    last = { status: 0, body: errorMessage(e) }
  }
  throw new StageError(
    stage,
    `port ${port} did not become healthy within ${sw.timeout / 1000} s: GET ${url} from ${s.host.name} last answered ${describeAnswer(last)}`,
    s.host.name
  )
}

/** Points the proxy at whatever `content` says: upstream file (atomic), then proxy_reload. */
async function pointProxy(
  ctx: RunContext,
  s: HostSession,
  release: string,
  content: string,
  port: number | undefined,
  stage: string
): Promise<void> {
  const sw = settings(ctx)
  await runOn(ctx, s, writeUpstream(sw.upstream_file, content), { stage })
  const env: Record<string, string> =
    port === undefined ? {} : { PORT: String(port), SAFE_DEPLOY_PORT: String(port) }
  await runHook(ctx, s, release, 'proxy reload', sw.proxy_reload, stage, env)
}

export function blueGreenStrategy(): SwitchStrategy {
  const hosts = new Map<HostSession, HostRun>()

  const activate = async (ctx: RunContext, s: HostSession, release: string, stage: string): Promise<void> => {
    const sw = settings(ctx)
    if (ctx.config.stages.restart)
      ctx.log.warn('stages.restart is not used by blue-green (switch.start and switch.stop are)', s.host.name)
    const read = await runOn(ctx, s, readBlueGreenState(s.layout, sw.upstream_file), { stage })
    const st = parseBlueGreenState(read.stdout, sw.ports)
    if (st.warning) ctx.log.warn(st.warning, s.host.name)
    const oldPort = st.active?.port
    const port = oldPort === sw.ports[0] ? sw.ports[1] : sw.ports[0]
    const stateRelease = st.active?.release
    const oldRelease =
      oldPort === undefined
        ? undefined
        : stateRelease && s.releases.includes(stateRelease) && stateRelease !== release
          ? stateRelease
          : s.current
    const h: HostRun = {
      release,
      port,
      oldPort,
      oldRelease,
      prevState:
        st.active?.from === 'state' ? { port: st.active.port, release: stateRelease ?? '' } : undefined,
      prevUpstream: st.upstream,
      running: false,
      moved: false,
      movedAt: 0
    }
    hosts.set(s, h)
    ctx.log.info(
      oldPort === undefined
        ? `blue-green: no port of ${sw.ports.join('/')} serves yet; starting releases/${release} on port ${port}`
        : `blue-green: port ${oldPort} serves ${oldRelease ? `releases/${oldRelease}` : '(unknown release)'}${st.active?.from === 'upstream' ? ' (from the upstream file)' : ''}; starting releases/${release} on port ${port}`,
      s.host.name
    )

    // Whatever a crashed earlier run left on the idle port goes first.
    const leftover = await stopPort(ctx, s, release, port, stage)
    if (leftover) ctx.log.warn(`clearing port ${port} before the start: ${leftover}`, s.host.name)

    h.running = true
    ctx.progress?.checkpoint()
    try {
      await startAndGate(ctx, s, release, port, stage)
    } catch (e) {
      const stopped = await stopPort(ctx, s, release, port, stage)
      if (stopped) ctx.log.warn(`could not stop port ${port}: ${stopped}`, s.host.name)
      else h.running = false
      const still = oldPort === undefined ? 'nothing served before' : `port ${oldPort} still serves`
      throw new StageError(
        stage,
        `${errorMessage(e)}; ${stopped ? 'tried to stop' : 'stopped'} port ${port}, nothing live changed (${still})`,
        s.host.name
      )
    }

    // From the first byte of the upstream file on, users may see the new release.
    h.moved = true
    h.movedAt = Date.now()
    ctx.progress?.checkpoint()
    await pointProxy(ctx, s, release, renderUpstream(sw.upstream_template, port), port, stage)
    ctx.log.info(`traffic -> port ${port} (proxy reloaded)`, s.host.name)
    await runOn(
      ctx,
      s,
      combine(`switch current to ${release}, record active port ${port}`, [
        switchCurrent(s.layout, release),
        writeActivePort(s.layout, port, release)
      ]),
      { stage }
    )
    ctx.log.info(
      `current -> releases/${release}, active port ${port}${oldPort === undefined ? '' : `; port ${oldPort} stops after verify passes`}`,
      s.host.name
    )
  }

  const restore = async (ctx: RunContext, s: HostSession, _release: string, stage: string): Promise<void> => {
    const h = hosts.get(s)
    if (!h) return
    const sw = settings(ctx)
    if (h.moved) {
      const back = h.oldRelease ?? h.release
      if (h.prevUpstream === undefined) {
        ctx.log.warn(
          `the upstream file did not exist before this run and nothing served before: left ${sw.upstream_file} as it is`,
          s.host.name
        )
      } else {
        if (h.oldPort !== undefined && h.oldRelease) {
          // The old port was never stopped (retire runs only after verify); make sure it still answers.
          const r = await runOn(ctx, s, httpProbe(withPort(sw.health, h.oldPort, address(s)), 5000), {
            stage,
            allowFail: true
          })
          const a = parseProbe(r.stdout)
          if (a.status !== 200) {
            ctx.log.warn(
              `port ${h.oldPort} answers ${describeAnswer(a)}; starting releases/${h.oldRelease} on it again`,
              s.host.name
            )
            await startAndGate(ctx, s, h.oldRelease, h.oldPort, stage)
          }
        }
        await pointProxy(ctx, s, back, h.prevUpstream, h.oldPort, stage)
        ctx.log.info(
          `traffic -> ${h.oldPort === undefined ? 'the previous upstream' : `port ${h.oldPort}`} (upstream file restored, proxy reloaded)`,
          s.host.name
        )
      }
      if (s.current) {
        await runOn(ctx, s, switchCurrent(s.layout, s.current), { stage })
        ctx.log.info(`current -> releases/${s.current} (restored)`, s.host.name)
      } else {
        await runOn(ctx, s, removeCurrent(s.layout), { stage })
        ctx.log.warn('there was no previous release: removed `current`', s.host.name)
      }
      await runOn(
        ctx,
        s,
        h.prevState
          ? writeActivePort(s.layout, h.prevState.port, h.prevState.release || back)
          : clearActivePort(s.layout),
        { stage }
      )
      // Requests that the proxy's old workers still send to the new port finish before it stops.
      if (h.running && h.prevUpstream !== undefined) await sleep(sw.drain, ctx.signal)
    }
    if (h.running) {
      const failed = await stopPort(ctx, s, h.release, h.port, stage)
      if (failed) ctx.log.warn(`could not stop port ${h.port}: ${failed}`, s.host.name)
      else {
        h.running = false
        ctx.log.info(`stopped port ${h.port} (releases/${h.release})`, s.host.name)
      }
    }
  }

  const retire = async (ctx: RunContext, s: HostSession, _release: string): Promise<void> => {
    const h = hosts.get(s)
    if (!h?.moved) return
    if (h.oldPort === undefined) return
    // no release is known to serve the old port (no current, or a state file without one): stop it with the new
    // release's `stop`, which is the same command
    const inside = h.oldRelease ?? h.release
    const sw = settings(ctx)
    const wait = ctx.dryRun ? 0 : sw.drain - (Date.now() - h.movedAt)
    if (wait > 0) {
      ctx.log.info(`draining port ${h.oldPort} for ${(wait / 1000).toFixed(1)} s more`, s.host.name)
      await sleep(wait, ctx.signal)
    }
    const failed = await stopPort(
      ctx,
      s,
      inside,
      h.oldPort,
      'cleanup',
      `after verify and ${sw.drain / 1000} s of drain: stop port ${h.oldPort}`
    )
    if (failed) throw new Error(`could not stop port ${h.oldPort} (releases/${inside}): ${failed}`)
    ctx.log.info(`stopped port ${h.oldPort} (releases/${inside})`, s.host.name)
  }

  return {
    name: 'blue-green',
    wentLive: s => hosts.get(s)?.moved ?? false,
    port: s => hosts.get(s)?.port,
    save: s => hosts.get(s),
    resume: (s, saved) => {
      if (saved) hosts.set(s, { ...(saved as HostRun) })
    },
    activate,
    restore,
    retire
  }
}
