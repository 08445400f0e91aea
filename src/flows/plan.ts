/**
 * `plan`: a dry run of the deploy's real stages (the list `deployStages` in flows/deploy.ts builds for `deploy`)
 * against a recording transport (src/transport/recording.ts), so it cannot drift from what a deploy does.
 * It connects to no host, takes no lock and changes nothing; what a deploy would do on the runner (the test
 * command, packing the source, HTTP checks from the runner, waits) is shown, not done.
 */
import { REMOTE_SHELL } from '../commands/command.js'
import type { LoadedConfig } from '../config/load.js'
import { RecordingTransport, type AssumedHost, type Recorded } from '../transport/recording.js'
import type { Reporter } from '../report/log.js'
import { errorMessage } from '../core/errors.js'
import { runStagesSafely } from '../pipeline/orchestrator.js'
import { deployStages, newContext, type RunRequest } from './deploy.js'
import type { Stage } from '../pipeline/stage.js'
import { rolloutBatches } from '../pipeline/rollout.js'

/** The release `current` points to on every host in the plan (a plan reads no host). */
const ASSUMED_CURRENT = '<current>'

const quiet: Reporter = { info() {}, warn() {}, error() {}, startGroup() {}, endGroup() {} }

/** The config with every `env:` value as `<NAME>`: the plan shows where each goes, never what it is. */
function withPlaceholders(loaded: LoadedConfig): LoadedConfig {
  const env = Object.fromEntries(Object.keys(loaded.config.env).map(k => [k, `<${k}>`]))
  return { ...loaded, config: { ...loaded.config, env } }
}

export interface PlanResult {
  text: string
  /** Every command in the order the stages sent it (host commands and runner steps). */
  records: Recorded[]
}

/**
 * Runs the deploy's stages against recording transports. Each host is assumed to serve `ASSUMED_CURRENT`
 * (blue-green: on the second port of the pair), unless `assumed` says otherwise.
 */
export async function planDeploy(req: RunRequest & { assumed?: AssumedHost }): Promise<PlanResult> {
  const loaded = withPlaceholders(req.loaded)
  const now = req.now ?? new Date()
  const r: RunRequest = { ...req, loaded, reporter: quiet, now, onProgress: undefined, onLock: undefined }
  const ctx = newContext(r, 'deploy', now, false)
  const sw = loaded.config.switch
  const assumed: AssumedHost = req.assumed ?? {
    current: ASSUMED_CURRENT,
    activePort: sw.strategy === 'blue-green' ? sw.ports[1] : undefined
  }
  const records: Recorded[] = []
  let stage = 'preflight'
  ctx.dryRun = {
    connect: host => new RecordingTransport(host.name, records, () => stage, assumed),
    runner: (label, command, host) =>
      records.push({ host: host ?? 'runner', onRunner: true, stage, label, script: command })
  }
  const p = deployStages(ctx, r)
  // each command is recorded under the stage that sent it: every step of a stage says its name first
  const stages = p.stages.map((st): Stage => {
    const wrapped = Object.create(st) as Record<string, unknown>
    for (const step of ['begin', 'run', 'end', 'undo', 'recheck'] as const) {
      const fn = (st as unknown as Record<string, unknown>)[step]
      if (typeof fn !== 'function') continue
      const name = step === 'undo' || step === 'recheck' ? `undo ${st.name}` : st.name
      wrapped[step] = (...args: unknown[]) => (
        (stage = name),
        (fn as (...a: unknown[]) => unknown).apply(st, args)
      )
    }
    return wrapped as unknown as Stage
  })
  const outcome = await runStagesSafely(ctx, stages)
  const release = p.release?.() ?? '(none)'
  const c = loaded.config
  const out: string[] = [
    `# plan for ${c.app}: release ${release} (the time part is set when the deploy starts)`,
    `# every script below is sent over stdin to: ${REMOTE_SHELL}`,
    `## a dry run of the deploy's stages: no host was contacted; each is shown serving ${assumed.current ? `releases/${assumed.current}` : 'no release'}${assumed.activePort ? ` on port ${assumed.activePort}` : ''}, and env: values as <NAME>`,
    ...fleetLines(loaded),
    ...(loaded.auth.jump
      ? [`## every SSH host is reached through the jump host ${loaded.auth.jump.label} (ssh.jump)`]
      : []),
    ...loaded.unresolved.map(
      u => `## ${u.key} needs ${u.variable}, which is not set: what uses it is shown without it`
    ),
    ''
  ]
  out.push(...render(records))
  if (outcome.failure)
    out.push(
      `## the dry run stopped at ${outcome.failure.stage}${outcome.failure.host ? ` on ${outcome.failure.host}` : ''}: ${errorMessage(outcome.failure.message)}`
    )
  else
    out.push(
      ...ctx.sessions.flatMap(s =>
        s.prune?.length
          ? [
              `## finish on ${s.host.name}: ${s.prune.map(id => `releases/${id}`).join(', ')} moved into .safe-deploy/pruned/ and removed in the background (keep_releases)`
            ]
          : []
      ),
      '## finish: history line and the run log on every host, then the lock released on the primary',
      '## on a failure after the switch: the database back (when migrate changed it), the previous release switched back, restarted and verified; exit 4'
    )
  return { text: ctx.log.redactor.redact(out.join('\n')), records }
}

/**
 * For a fleet with roles or a rollout, or a selection that leaves the primary out: each host with its roles and
 * path, where the lock and the once-only stages run, and the batches the rollout switches in.
 */
function fleetLines(loaded: LoadedConfig): string[] {
  const { hosts, lockHost } = loaded
  const r = loaded.config.rollout
  // a fleet without roles or rollout: the stages below show every host already
  if (!lockHost && (hosts.length < 2 || (!r && !hosts.some(h => h.roles.length)))) return []
  const primary = hosts.find(h => h.primary)
  const out = [`## hosts (${hosts.length}):`]
  for (const h of hosts) {
    const once = h === primary ? `; ${lockHost ? '' : 'the lock, '}backup and migrate run here` : ''
    out.push(
      `##   ${h.name} (${h.kind === 'ssh' ? `${h.user}@${h.address}:${h.port}` : 'local'}) roles ${h.roles.join(',') || '-'}, path ${h.path}${once}`
    )
  }
  if (lockHost)
    out.push(
      `## the lock: on ${lockHost.name}, the config's primary (not selected: connected for the lock only; nothing is deployed there)`
    )
  const batches = rolloutBatches(hosts, r)
  if (r)
    out.push(
      `## rollout: switch and verify in ${batches.length} batch${batches.length === 1 ? '' : 'es'}${r.wait ? `, ${r.wait / 1000} s apart` : ''}: ${batches.map((b, i) => `${i + 1}) ${b.join(', ')}`).join('; ')}`
    )
  else out.push('## no rollout: every host switches together, after every host staged')
  return out
}

/** Stage by stage (in run order), host by host: `# label`, then the script (`$ command` for the runner). */
function render(records: Recorded[]): string[] {
  const out: string[] = []
  const groups: Recorded[][] = []
  for (const rec of records) {
    const last = groups.at(-1)
    if (last && last[0]?.stage === rec.stage) last.push(rec)
    else groups.push([rec])
  }
  for (const group of groups) {
    // host by host, in the order they first appear (hosts run in parallel; their commands interleave); a
    // step on the runner for no host (a wait) keeps its place between what comes before and after it
    const sorted: Recorded[] = []
    let segment: Recorded[] = []
    const flush = () => {
      const first = [...new Set(segment.map(r => r.host))]
      sorted.push(...segment.sort((a, b) => first.indexOf(a.host) - first.indexOf(b.host)))
      segment = []
    }
    for (const rec of group) {
      if (rec.host === 'runner') {
        flush()
        sorted.push(rec)
      } else segment.push(rec)
    }
    flush()
    let host: string | undefined
    for (const rec of sorted) {
      if (rec.host !== host) {
        host = rec.host
        out.push(`## ${rec.stage} on ${host}`)
      }
      for (const label of rec.parts ?? [rec.label]) out.push(`# ${label}`)
      if (rec.onRunner) {
        if (rec.script) out.push(`$ ${rec.script}`)
      } else {
        if (rec.stdin) out.push(`# (stdin: ${rec.stdin})`)
        if (rec.script) out.push(rec.script)
      }
      out.push('')
    }
  }
  return out
}
