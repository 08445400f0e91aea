import { unresolvedDatabases } from '../../config/load.js'
import { parseKeyValues } from '../../commands/release.js'
import { primaryOf, runOn, type HostSession, type RunContext } from '../../host/context.js'
import { StageError, errorMessage } from '../../core/errors.js'
import { backupConfigOf, resolvePlan, type BackupPlan } from '../../backup-engines/plan.js'
import { probeScript } from '../script.js'
import type { Target, Tools } from '../../backup-engines/target.js'
import { describeTarget, engineOf } from '../../backup-engines/index.js'

export interface ProbeResult {
  tools: Record<number, Tools>
  /** Database size in bytes, per target index, when the server answered. */
  sizes: Record<number, number | undefined>
  /** What went wrong per target (missing tool, cannot connect, old client). */
  problems: { target?: Target; message: string }[]
  freeKb?: number
}

/** The probe lines of target `index` (`DB_SERVER=0 150018 7651235`) by key without `DB_` (`SERVER`). */
export function targetLines(kv: Map<string, string[]>, index: number): Map<string, string[]> {
  const out = new Map<string, string[]>()
  const mine = `${index} `
  for (const [k, values] of kv) {
    if (!k.startsWith('DB_')) continue
    const v = values.filter(x => x.startsWith(mine)).map(x => x.slice(mine.length))
    if (v.length) out.set(k.slice('DB_'.length), v)
  }
  return out
}

/** Host programs a backup of this plan needs besides the database tools. */
function neededTools(plan: BackupPlan): string[] {
  return [
    'sha256sum',
    ...(plan.targets.some(t => t.compress === 'gzip') || plan.files.length ? ['gzip'] : []),
    ...(plan.targets.some(t => t.compress === 'zstd') ? ['zstd'] : []),
    ...(plan.files.length ? ['tar'] : []),
    ...(plan.recipients.length ? ['age', 'mkfifo', 'tee'] : []),
    ...(plan.signKey ? ['od'] : [])
  ]
}

/** Checks the tools and connects to each database; reports what is wrong in words a person can act on. */
export async function probeHost(
  ctx: RunContext,
  s: HostSession,
  plan: BackupPlan,
  opts: { stage: string; needs?: string[] }
): Promise<ProbeResult> {
  const needs = opts.needs ?? neededTools(plan)
  const r = await runOn(ctx, s, probeScript(plan, { needs }), { stage: opts.stage, allowFail: true })
  const kv = parseKeyValues(r.stdout)
  const host = s.host.name
  const out: ProbeResult = { tools: {}, sizes: {}, problems: [] }
  const free = Number(kv.get('FREE_KB')?.[0])
  if (Number.isFinite(free)) out.freeKb = free
  for (const x of kv.get('MISSING') ?? []) {
    const pkg = { sha256sum: 'coreutils', mkfifo: 'coreutils', tee: 'coreutils', od: 'coreutils' }[x] ?? x
    out.problems.push({ message: `${x} not found on ${host}: install ${pkg}` })
  }
  for (const t of plan.targets) {
    const mine = targetLines(kv, t.index)
    const what = describeTarget(t)
    const where = t.container ? `in compose service ${t.container.service} on ${host}` : `on ${host}`
    if (t.container && mine.get('NODIR')) {
      const dir = t.container.dir
      const key = `backup.databases[${t.index}].compose_dir`
      out.problems.push({
        target: t,
        message:
          dir === `${plan.root}/current`
            ? `no current release on ${host} yet: ${dir}, the compose file dir of compose service ${t.container.service} (${key} defaults to the current release), does not exist, so the ${what} cannot be reached; deploy once without this database in backup.databases (or with backup: false), or set ${key} to where the compose project is`
            : `the compose file dir ${dir} (${key}) of compose service ${t.container.service} does not exist on ${host}, so the ${what} cannot be reached`
      })
      continue
    }
    if (mine.get('NODOCKER')) {
      out.problems.push({ target: t, message: `docker not found on ${host}, needed for the ${what}` })
      continue
    }
    const tools = new Map(
      (mine.get('TOOL') ?? []).map(l => [l.split(' ')[0] as string, l.slice(l.indexOf(' ') + 1)])
    )
    const missing = (mine.get('MISSING') ?? []).map(l => l.split(' ')[0] as string)
    const server = mine.get('SERVER')?.[0]
    const error = (mine.get('ERROR') ?? []).join('\n')
    engineOf(t.engine).readProbe(
      t,
      { kv: mine, tools, missing, server, error, where, what },
      {
        problem: message => out.problems.push({ target: t, message }),
        size: bytes => (out.sizes[t.index] = bytes),
        tools: found => (out.tools[t.index] = found),
        warn: message => ctx.log.warn(message, host)
      }
    )
    if (!server && error && !missing.length)
      out.problems.push({ target: t, message: `cannot reach the ${what} ${where}: ${error}` })
  }
  return out
}

export function throwProblems(stage: string, s: HostSession, what: string, probe: ProbeResult): void {
  if (!probe.problems.length) return
  throw new StageError(
    stage,
    `${what} failed on ${s.host.name}: ${probe.problems.map(p => p.message).join('; ')}`,
    s.host.name
  )
}

export interface DatabaseSize {
  label: string
  engine: string
  bytes?: number
  error?: string
}

/** For `status`: the size of each configured database on the primary (never throws). */
export async function databaseSizes(ctx: RunContext): Promise<DatabaseSize[]> {
  const b = backupConfigOf(ctx.config)
  if (!b || !b.databases.length) return []
  const s = primaryOf(ctx)
  const full = resolvePlan(ctx.config.app, b, s.layout, ctx.config.env)
  // a database whose URL or password variable is not set is not probed: status runs without it
  const waiting = unresolvedDatabases(ctx.loaded.unresolved)
  const notSet = full.targets
    .filter(t => waiting.has(t.index))
    .map(t => ({
      label: t.label,
      engine: t.engine,
      error: `not checked: ${(waiting.get(t.index) ?? []).map(u => `${u.variable} is not set (${u.key})`).join(', ')}`
    }))
  const plan = { ...full, targets: full.targets.filter(t => !waiting.has(t.index)) }
  if (!plan.targets.length) return notSet
  try {
    const probe = await probeHost(ctx, s, plan, { stage: 'status', needs: [] })
    return [
      ...notSet,
      ...plan.targets.map(t => ({
        label: t.label,
        engine: t.engine,
        bytes: probe.sizes[t.index],
        error: probe.problems.find(p => p.target === t)?.message
      }))
    ]
  } catch (e) {
    return [
      ...notSet,
      ...plan.targets.map(t => ({ label: t.label, engine: t.engine, error: errorMessage(e) }))
    ]
  }
}
