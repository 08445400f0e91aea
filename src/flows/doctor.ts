/**
 * `safe-deploy doctor`: every problem a deploy of this config would meet, per host, each with its fix. It
 * changes nothing on any host (no layout is created, no lock taken) and shares its layout, shared-file, tool
 * and disk checks with preflight (src/pipeline/findings.ts), so it says what the next deploy would say.
 */
import { inspectHost, parseKeyValues, readHistory } from '../commands/release.js'
import { shJoin } from '../commands/quote.js'
import { parseHistory } from '../release/history.js'
import {
  closeAll,
  connectAll,
  lockSessionOf,
  runOn,
  type HostSession,
  type RunContext
} from '../host/context.js'
import { errorMessage } from '../core/errors.js'
import { newContext, type RunRequest } from '../engine/lifecycle.js'
import { backupsOn } from '../config/rules.js'
import { httpChecks } from '../pipeline/checks.js'
import { inspectFindings, type Finding } from '../pipeline/findings.js'
import { planFor } from '../backup/ops/shared.js'
import { probeHost } from '../backup/ops/probe.js'
import { readLock } from './status.js'

export interface DoctorReport {
  findings: Finding[]
  /** No finding is an error: a deploy would get past preflight. */
  ok: boolean
}

/** Every command of the config that runs on a host (top level, the switch, and each role's overrides). */
function hostCommands(ctx: RunContext): string[] {
  const c = ctx.config
  const sw = (x: typeof c.switch | undefined): string[] =>
    !x
      ? []
      : x.strategy === 'graceful'
        ? [x.reload]
        : x.strategy === 'blue-green'
          ? [x.start, x.stop, x.proxy_reload]
          : []
  const verify = (v: typeof c.verify | undefined) =>
    v?.command === undefined ? [] : Array.isArray(v.command) ? v.command : [v.command]
  const stages = c.stages as Record<string, unknown>
  const m = c.stages.migrate
  return [
    ...['build', 'restart', 'stop', 'prune'].flatMap(k =>
      typeof stages[k] === 'string' ? [stages[k] as string] : []
    ),
    ...(m ? [m.command, m.revision, m.down].filter((x): x is string => !!x) : []),
    ...sw(c.switch),
    ...verify(c.verify),
    ...Object.values(c.roles ?? {}).flatMap(r => [
      ...(r.stages?.restart ? [r.stages.restart] : []),
      ...sw(r.switch),
      ...verify(r.verify)
    ])
  ]
}

/** `sudo X ...` commands: the deploy user must be allowed to run them without a password. */
async function sudoFindings(ctx: RunContext, s: HostSession, commands: string[]): Promise<Finding[]> {
  const host = s.host.name
  const out: Finding[] = []
  const seen = new Set<string>()
  for (const cmd of commands) {
    // each `sudo ...` part of the command line, up to the next shell operator
    for (const m of cmd.matchAll(/(?:^|[;&|]\s*)sudo\s+([^;&|]+)/g)) {
      const words = (m[1] as string).trim().split(/\s+/)
      // sudo's own options (-u USER, -E, ...) come first; the rest is the command it runs
      const opts: string[] = []
      while (words[0]?.startsWith('-')) {
        const o = words.shift() as string
        opts.push(o)
        if (/^-[ugCDhpRrT]$/.test(o) && words.length) opts.push(words.shift() as string)
      }
      const key = [...opts, ...words].join(' ')
      if (seen.has(key) || !words.length) continue
      seen.add(key)
      const r = await runOn(
        ctx,
        s,
        {
          label: 'may sudo',
          script: `command -v sudo >/dev/null 2>&1 || exit 127; sudo -n ${shJoin(opts.filter(o => o !== '-n'))} -l -- ${shJoin(words)} >/dev/null 2>&1`
        },
        { stage: 'doctor', allowFail: true }
      )
      const user = s.host.user || 'the deploy user'
      if (r.code === 0) out.push({ host, check: 'sudo', level: 'ok', message: `may run \`sudo ${key}\`` })
      else if (r.code === 127)
        out.push({
          host,
          check: 'sudo',
          level: 'error',
          message: `sudo is not installed on ${host}, and the config runs \`sudo ${key}\``,
          fix: `install sudo on ${host} and allow ${user} exactly that command (NOPASSWD), or drop sudo from the command`
        })
      else
        out.push({
          host,
          check: 'sudo',
          level: 'error',
          message: `${user} cannot run \`sudo ${key}\` without a password on ${host}`,
          fix: `add to /etc/sudoers.d/safe-deploy on ${host}: ${user} ALL=(root) NOPASSWD: ${words.join(' ').replace(/^(\S+)/, p => (p.startsWith('/') ? p : `/usr/bin/${p}`))}`
        })
    }
  }
  return out
}

/** docker compose (v2 plugin) or docker-compose, when a command uses it, run with the config's `env`. */
async function composeFindings(ctx: RunContext, s: HostSession, commands: string[]): Promise<Finding[]> {
  const host = s.host.name
  const uses = [
    ...(commands.some(c => /\bdocker compose\b/.test(c)) ? ['docker compose'] : []),
    ...(commands.some(c => /\bdocker-compose\b/.test(c)) ? ['docker-compose'] : [])
  ]
  const out: Finding[] = []
  for (const tool of uses) {
    const r = await runOn(
      ctx,
      s,
      {
        label: tool,
        script: `out=$(${tool} version 2>&1); rc=$?; printf '%s\\n' "$out" | head -n 1; exit $rc`,
        // the environment the config's commands get (env.PATH, DOCKER_HOST for rootless docker, ...)
        env: ctx.config.env
      },
      { stage: 'doctor', allowFail: true }
    )
    const line = r.stdout.trim()
    if (r.code === 0 && line && !/not found|unknown|is not a docker command/i.test(line))
      out.push({ host, check: 'tools', level: 'ok', message: `${tool}: ${line}` })
    else
      out.push({
        host,
        check: 'tools',
        level: 'error',
        message: `\`${tool}\` does not run on ${host}: ${line || `exit ${r.code}`}`,
        fix: `install ${tool === 'docker compose' ? 'the Docker Compose plugin (docker-compose-plugin)' : 'docker-compose'} on ${host}`
      })
  }
  return out
}

async function hostFindings(ctx: RunContext, s: HostSession): Promise<Finding[]> {
  const host = s.host.name
  const fromHost = httpChecks(ctx).some(c => c.from === 'host')
  const r = await runOn(
    ctx,
    s,
    inspectHost(s.layout, ctx.config.shared.files, ['tar', 'curl', 'wget'], { create: false }),
    { stage: 'doctor' }
  )
  const kv = parseKeyValues(r.stdout)
  const out = inspectFindings(s, { kv, needs: ['tar'], fromHost, deploying: true })
  const commands = hostCommands(ctx)
  out.push(...(await sudoFindings(ctx, s, commands)))
  out.push(...(await composeFindings(ctx, s, commands)))
  const current = kv.get('CURRENT')?.[0]?.replace(/^releases\//, '')
  const releases = kv.get('RELEASE') ?? []
  out.push({
    host,
    check: 'releases',
    level: 'info',
    message: current ? `current ${current}; ${releases.length} release(s) on disk` : 'no release yet'
  })
  return out
}

/** Backups (on the primary): the tools and versions, and a connection to each database. */
async function backupFindings(ctx: RunContext, p: HostSession): Promise<Finding[]> {
  const host = p.host.name
  if (!backupsOn(ctx.config)) return []
  try {
    const probe = await probeHost(ctx, p, planFor(ctx, p, 'doctor'), { stage: 'doctor' })
    if (!probe.problems.length)
      return [
        { host, check: 'backup tools', level: 'ok', message: 'backup tools present; every database answers' }
      ]
    return probe.problems.map(x => ({
      host,
      check: 'backup tools',
      level: 'error' as const,
      message: x.message,
      fix: 'see docs/backups.md "What each engine needs on the host"'
    }))
  } catch (e) {
    return [
      {
        host,
        check: 'backup tools',
        level: 'warning',
        message: `not checked: ${errorMessage(e)}`,
        fix: 'set the variables the backup section names (env:NAME) and run doctor again'
      }
    ]
  }
}

async function lockAndHistory(ctx: RunContext, p: HostSession): Promise<Finding[]> {
  const host = p.host.name
  const out: Finding[] = []
  const lock = await readLock(ctx, p)
  if (lock.state === 'free')
    out.push({ host, check: 'lock', level: 'ok', message: 'the deploy lock is free' })
  else
    out.push({
      host,
      check: 'lock',
      level: 'warning',
      message: `the deploy lock is ${lock.state === 'expired' ? 'expired (the next deploy takes it over)' : 'held'}: ${lock.owner?.who ?? '?'} running \`${lock.owner?.command ?? '?'}\` since ${lock.owner?.started ?? '?'}`,
      fix:
        lock.state === 'held'
          ? 'wait for that run (deploy --wait-lock 5m); if it is dead: safe-deploy lock release'
          : undefined
    })
  const history = parseHistory((await runOn(ctx, p, readHistory(p.layout), { stage: 'doctor' })).stdout)
  for (const h of history.slice(-3).reverse())
    out.push({
      host,
      check: 'history',
      level: 'info',
      message: `${h.finished} ${h.type} ${h.release} by ${h.actor}: ${h.status}${h.bad ? ' (marked bad)' : ''}`
    })
  if (!history.length) out.push({ host, check: 'history', level: 'info', message: 'no deploy recorded yet' })
  return out
}

/** What an unreachable host's connect error means, and what to do. */
function sshFinding(host: string, error: string): Finding {
  const fix = /host key|fingerprint/i.test(error)
    ? `if the server was reinstalled, check its key out of band, then update ssh.known_hosts (ssh-keyscan ${host})`
    : /authentication|permission denied|auth/i.test(error)
      ? "add the public key of ssh.private_key to the deploy user's ~/.ssh/authorized_keys on the host"
      : 'check the address and port, that sshd runs, and that the runner can reach it (firewall, ssh.jump)'
  return { host, check: 'ssh', level: 'error', message: error, fix }
}

/** Connects read-only to every selected host and lists every finding; changes nothing. */
export async function doctor(req: RunRequest): Promise<DoctorReport> {
  const ctx = newContext(req, 'doctor', new Date(), false)
  const findings: Finding[] = []
  try {
    await connectAll(ctx, { tolerate: true })
    for (const u of ctx.unreachable ?? []) findings.push(sshFinding(u.host.name, u.error))
    for (const s of ctx.sessions) {
      findings.push({ host: s.host.name, check: 'ssh', level: 'ok', message: 'connected; host key verified' })
      findings.push(...(await hostFindings(ctx, s)))
    }
    const down = (ctx.unreachable ?? []).some(u => u.host.primary || u.host === ctx.loaded.lockHost)
    if (!down && ctx.sessions.length) {
      const p = lockSessionOf(ctx)
      findings.push(...(await backupFindings(ctx, p)))
      findings.push(...(await lockAndHistory(ctx, p)))
    }
  } finally {
    await closeAll(ctx)
  }
  return { findings, ok: !findings.some(f => f.level === 'error') }
}

const MARK = { ok: '✓', info: '·', warning: '!', error: '✗' } as const

/** The report as a person reads it: per host, one line per finding, the fix under it. */
export function doctorText(r: DoctorReport): string {
  const hosts = [...new Set(r.findings.map(f => f.host))]
  const lines: string[] = []
  for (const h of hosts) {
    lines.push(`${h}:`)
    for (const f of r.findings.filter(x => x.host === h)) {
      lines.push(`  ${MARK[f.level]} ${f.check}: ${f.message}`)
      if (f.fix && f.level !== 'ok') lines.push(`      fix: ${f.fix}`)
    }
  }
  const errors = r.findings.filter(f => f.level === 'error').length
  const warnings = r.findings.filter(f => f.level === 'warning').length
  lines.push(
    errors
      ? `${errors} problem(s) a deploy would stop on${warnings ? `, ${warnings} warning(s)` : ''}`
      : `no problem a deploy would stop on${warnings ? `; ${warnings} warning(s)` : ''}`
  )
  return lines.join('\n') + '\n'
}
