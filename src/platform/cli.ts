import { parseArgs } from 'node:util'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pkg from '../../package.json' with { type: 'json' }
import { loadConfig, requireEnv, type LoadedConfig, type Overrides } from '../config/load.js'
import { ConfigError, ExitCode } from '../core/exit.js'
import { parseReleaseId } from '../release/id.js'
import { parseDuration } from '../config/duration.js'
import { parseBackupName } from '../backup-engines/name.js'
import { deploy, listReleaseState, newContext, planRollback, rollback } from '../flows/deploy.js'
import { forceReleaseLock, getLock, getStatus } from '../flows/status.js'
import { planDeploy } from '../flows/plan.js'
import { showLogs } from '../flows/logs.js'
import { onEvent, type RunSubscriber } from '../engine/events.js'
import { errorMessage } from '../core/errors.js'
import { defaultActor } from './actor.js'
import { terminalReporter } from './terminal.js'
import { writeDotenv } from './outputs.js'
import { hostTable } from '../report/hosts.js'
import { BACKUP_COMMANDS, BACKUP_USAGE, checkBackupArgs, runBackupCli } from '../flows/backup.js'
import { PRESETS, findExamplesDir, initProject } from './init.js'

const USAGE = `usage: safe-deploy <command> [options]

commands:
  deploy                 test, backup, upload, build, migrate, switch, verify; roll back on failure
  rollback [--to R]      switch back to the previous good release (or release R), restart, verify;
                         [--restore BACKUP | --no-db] for the database (see README); --dry-run shows
                         what it would do (target, database step, switch) and changes nothing
  releases               list releases on each host, which is current, and which are marked bad
  status                 current release, health, disk and lock on each host
  logs [--since 1h] [--lines N] [--follow]
                         the app's logs on each host (logs.command), lines prefixed by host;
                         --follow streams until Ctrl-C; read-only
  lock status            who holds the deploy lock (one for the fleet, on the primary)
  lock release           remove the deploy lock (when the run that held it is dead)
  plan                   print every command a deploy would run on each host; runs nothing
  plan rollback          what a rollback would do (same as rollback --dry-run); read-only
  init --preset P        write a commented safe-deploy.yml and CI files for a stack: ${Object.keys(PRESETS).join(', ')}
                         [--ci github|gitlab|none] [--dir DIR] [--force]
${BACKUP_USAGE}

options:
  -c, --config FILE      config file (default: safe-deploy.yml)
      --json             print the result as JSON on stdout (progress goes to stderr)
      --dotenv FILE      also write the outputs as SAFE_DEPLOY_*=value lines (GitLab dotenv reports)
      --hosts H[,H]      only these hosts of the config (by name or address; each keeps its settings);
                         --host is another name for it
      --roles R[,R]      only the hosts with one of these roles (with --hosts: hosts matching both)
      --skip-unreachable deploy to the hosts that can be reached, leaving the others out (loudly);
                         never the primary. Default: one unreachable host stops the run (exit 3)
      --since DURATION   logs: since this long ago (default 10m)   --lines N  logs: at most N (default 100)
      --follow           logs: keep streaming until Ctrl-C
      --port N           override the SSH port
      --user NAME        override the SSH user   --path DIR    override the deploy root
      --key-file FILE    private key file        --known-hosts-file FILE
      --to RELEASE       rollback target
      --skip-test        deploy: run no stages.test (the tests ran in an earlier CI job)
      --wait-lock DUR    wait up to DUR (90s, 5m) for a lock another run holds, instead of failing
      --restore BACKUP   rollback: restore this backup for the database (its name: see backups list)
      --no-db            rollback: leave the database as it is
      --yes              confirm restore / backups prune / a rollback's down command without backups
      --keep, --protect  backup: keep this backup out of retention
      --dry-run          rollback: show what it would do; connect and read only
      --out DIR          where backups download writes (default: the log dir)
  -v, --verbose          log every command's label
  -h, --help             this text
      --version          the version

exit codes: 0 ok, 2 bad input, 3 failed before anything live changed, 4 failed and rolled back,
            5 rollback failed (a person must look; the log says what each host is in)`

export interface CliIO {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  env: NodeJS.ProcessEnv
  signal?: AbortSignal
}

function version(): string {
  return pkg.version
}

/**
 * The result of a run on the terminal, for every command that changes a host: with --json the result on
 * stdout; else the stage table (deploy, rollback), the backup's name or what prune deleted (stdout), the
 * verdict and where the log and report are (stderr).
 */
function terminalResult(io: CliIO, json: boolean): RunSubscriber {
  return onEvent('the terminal summary', 'run-finished', ({ result: r }) => {
    if (json) {
      io.stdout.write(JSON.stringify(r, null, 2) + '\n')
      return
    }
    if (r.command === 'prune') {
      if (r.prune)
        io.stdout.write(r.prune.length ? `deleted: ${r.prune.join(', ')}\n` : 'nothing to delete\n')
      io.stderr.write(`${r.verdict}\n`)
      return
    }
    if (r.command === 'backup' || r.command === 'restore') {
      if (r.backupName) io.stdout.write(`${r.backupName}\n`)
    } else {
      io.stderr.write('\n')
      for (const s of r.stages)
        io.stderr.write(
          `  ${s.name.padEnd(14)} ${s.status.padEnd(11)} ${s.duration_s.toFixed(1).padStart(6)} s${s.error ? `  ${s.error.split('\n')[0]}` : ''}\n`
        )
      // the per-host report, for a run with more than one host
      if ((r.hostResults?.length ?? 0) > 1) {
        io.stderr.write('\n')
        for (const line of hostTable(r.hostResults ?? [])) io.stderr.write(`  ${line}\n`)
      }
    }
    io.stderr.write(`\n${r.verdict}\n`)
    if (r.logFile) io.stderr.write(`log: ${r.logFile}\n${r.reportFile ? `report: ${r.reportFile}\n` : ''}`)
  })
}

/** --dotenv FILE: the outputs as SAFE_DEPLOY_*=value lines, for GitLab's dotenv report. */
const dotenvFile = (file: string): RunSubscriber =>
  onEvent('the dotenv file', 'run-finished', e => writeDotenv(file, e.result))

/** `init`: writes the preset's files into --dir and says what to do next. */
function runInit(o: { preset?: string; ci: string; dir: string; force: boolean }, io: CliIO): number {
  try {
    if (!o.preset)
      throw new ConfigError(`init: --preset is required: one of ${Object.keys(PRESETS).join(', ')}`)
    if (o.ci !== 'github' && o.ci !== 'gitlab' && o.ci !== 'none')
      throw new ConfigError(`--ci: expected github, gitlab or none, got ${JSON.stringify(o.ci)}`)
    const here = fileURLToPath(import.meta.url)
    const examplesDir = findExamplesDir(here)
    if (!examplesDir) throw new ConfigError('init: the examples shipped with safe-deploy are missing')
    const schema = join(dirname(examplesDir), 'safe-deploy.schema.json')
    const r = initProject({
      preset: o.preset,
      dir: o.dir,
      ci: o.ci,
      force: o.force,
      examplesDir,
      schemaFile: existsSync(schema) ? schema : undefined
    })
    io.stdout.write(
      `wrote ${r.written.join(', ')}\nnext:\n${r.next.map((n, i) => `  ${i + 1}. ${n}`).join('\n')}\n`
    )
    return 0
  } catch (e) {
    io.stderr.write(`safe-deploy: ${errorMessage(e)}\n`)
    return e instanceof ConfigError ? ExitCode.badInput : ExitCode.failure
  }
}

/** The CLI; returns the exit code. Every path that fails says why on stderr. */
export async function runCli(argv: string[], io: CliIO): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c', default: 'safe-deploy.yml' },
        json: { type: 'boolean', default: false },
        dotenv: { type: 'string' },
        host: { type: 'string' },
        hosts: { type: 'string' },
        roles: { type: 'string' },
        'skip-unreachable': { type: 'boolean', default: false },
        since: { type: 'string' },
        lines: { type: 'string' },
        follow: { type: 'boolean', default: false },
        port: { type: 'string' },
        user: { type: 'string' },
        path: { type: 'string' },
        'key-file': { type: 'string' },
        'known-hosts-file': { type: 'string' },
        to: { type: 'string' },
        restore: { type: 'string' },
        'no-db': { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        verbose: { type: 'boolean', short: 'v', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', default: false },
        yes: { type: 'boolean', default: false },
        keep: { type: 'boolean', default: false },
        protect: { type: 'boolean', default: false },
        out: { type: 'string' },
        'skip-test': { type: 'boolean', default: false },
        'wait-lock': { type: 'string' },
        preset: { type: 'string' },
        ci: { type: 'string', default: 'github' },
        dir: { type: 'string', default: '.' },
        force: { type: 'boolean', default: false }
      }
    })
  } catch (e) {
    io.stderr.write(`safe-deploy: ${errorMessage(e)}\n\n${USAGE}\n`)
    return ExitCode.badInput
  }
  const { values: o, positionals } = parsed
  if (o.version) {
    io.stdout.write(`${version()}\n`)
    return 0
  }
  const [command, sub] = positionals
  if (o.help || !command) {
    io.stdout.write(`${USAGE}\n`)
    return o.help ? 0 : ExitCode.badInput
  }
  if (command === 'init') return runInit(o, io)
  const known = ['deploy', 'rollback', 'releases', 'status', 'logs', 'lock', 'plan', ...BACKUP_COMMANDS]
  if (!known.includes(command)) {
    io.stderr.write(`safe-deploy: unknown command ${JSON.stringify(command)}\n\n${USAGE}\n`)
    return ExitCode.badInput
  }
  try {
    const port = o.port === undefined ? undefined : /^\d{1,5}$/.test(o.port) ? Number(o.port) : NaN
    if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
      throw new ConfigError(`--port: expected a port number 1-65535, got ${JSON.stringify(o.port)}`)
    }
    if (command === 'lock' && sub !== 'status' && sub !== 'release') {
      throw new ConfigError('lock: expected `lock status` or `lock release`')
    }
    if (command === 'plan' && sub !== undefined && sub !== 'deploy' && sub !== 'rollback')
      throw new ConfigError('plan: expected `plan`, `plan deploy` or `plan rollback`')
    if (o['dry-run'] && command !== 'rollback')
      throw new ConfigError('--dry-run: only for rollback (a deploy has `plan`)')
    const backupArgs = BACKUP_COMMANDS.includes(command)
      ? {
          command,
          sub: command === 'restore' ? undefined : sub,
          name: command === 'restore' ? sub : positionals[2],
          yes: o.yes,
          out: o.out,
          json: o.json,
          keep: o.keep || o.protect
        }
      : undefined
    if (backupArgs) checkBackupArgs(backupArgs)
    else if (o.keep || o.protect)
      throw new ConfigError(`--keep (--protect) is for \`backup\`, not \`${command}\``)
    const waitLockMs = o['wait-lock'] === undefined ? undefined : parseDuration(o['wait-lock'])
    if (waitLockMs === undefined && o['wait-lock'] !== undefined)
      throw new ConfigError(
        `--wait-lock: expected a duration such as 90s or 5m, got ${JSON.stringify(o['wait-lock'])}`
      )
    const logsArgs = command === 'logs' ? parseLogsArgs(o) : undefined
    if (!logsArgs && (o.since !== undefined || o.lines !== undefined || o.follow))
      throw new ConfigError(`--since, --lines and --follow are for \`logs\`, not \`${command}\``)
    const to = o.to === undefined ? undefined : parseReleaseId(o.to, '--to')
    if (o.restore !== undefined && o['no-db'])
      throw new ConfigError('rollback: give --restore NAME or --no-db, not both')
    const restore = o.restore === undefined ? undefined : parseBackupName(o.restore, undefined, '--restore')
    if (o['skip-unreachable'] && command !== 'deploy')
      throw new ConfigError(
        `--skip-unreachable: only for deploy (\`${command}\` ${['status', 'releases'].includes(command) ? 'shows every unreachable host anyway' : 'needs every host'})`
      )
    const overrides: Overrides = {
      host: o.host,
      hosts: o.hosts,
      roles: o.roles,
      skipUnreachable: o['skip-unreachable'] || undefined,
      port,
      user: o.user,
      path: o.path,
      privateKeyFile: o['key-file'],
      knownHostsFile: o['known-hosts-file'],
      skipTest: o['skip-test']
    }
    const loaded = loadConfig(o.config, overrides, io.env)
    // a variable only some commands use may be unset: refused here, before connecting, by those commands
    requireEnv(loaded, command, { sub, restore: o.restore !== undefined, noDb: o['no-db'] })
    const reporter = terminalReporter(io.stderr, false)
    const req = {
      loaded,
      reporter,
      signal: io.signal,
      verbose: o.verbose,
      actor: defaultActor(io.env),
      waitLockMs,
      // what a run that changes a host says when it ends
      subscribers: [terminalResult(io, o.json), ...(o.dotenv ? [dotenvFile(o.dotenv)] : [])]
    }

    if (backupArgs) return await runBackupCli(backupArgs, req, io)
    const rollbackReq = { ...req, to, restore, noDb: o['no-db'], yes: o.yes }
    if ((command === 'rollback' && o['dry-run']) || (command === 'plan' && sub === 'rollback')) {
      io.stdout.write((await planRollback(rollbackReq)) + '\n')
      return 0
    }
    if (command === 'deploy' || command === 'rollback') {
      const r = command === 'deploy' ? await deploy(req) : await rollback(rollbackReq)
      return r.exitCode
    }
    if (command === 'plan') {
      io.stdout.write((await planDeploy(req)).text + '\n')
      return 0
    }
    // read-only commands keep no log file
    const ctx = newContext(req, command, new Date(), false)
    if (logsArgs) {
      const failed = await showLogs(ctx, {
        since: new Date(Date.now() - logsArgs.sinceMs),
        lines: logsArgs.lines,
        follow: logsArgs.follow,
        write: line => io.stdout.write(`${line}\n`)
      })
      return failed.length ? ExitCode.failedNothingChanged : 0
    }
    if (command === 'releases') {
      const state = await listReleaseState(req)
      if (o.json) io.stdout.write(JSON.stringify(state, null, 2) + '\n')
      else {
        for (const h of state.hosts) {
          io.stdout.write(`${h.host}:\n`)
          if (h.error) {
            io.stdout.write(`  UNREACHABLE: ${h.error}\n`)
            continue
          }
          if (!h.details.length) io.stdout.write('  (no releases)\n')
          for (const d of h.details) {
            const marks = [
              d.current ? (d.state === 'verified' ? 'current' : `current (${d.state})`) : d.state,
              d.deployedBy ? `deployed by ${d.deployedBy}` : '',
              d.port !== undefined ? `port ${d.port}` : ''
            ]
            io.stdout.write(`  ${d.current ? '*' : ' '} ${d.release}  ${marks.filter(Boolean).join(', ')}\n`)
          }
        }
      }
      return state.hosts.some(h => h.error) ? ExitCode.failedNothingChanged : 0
    }
    if (command === 'status') {
      const st = await getStatus(ctx)
      if (o.json) io.stdout.write(JSON.stringify(st, null, 2) + '\n')
      else {
        for (const h of st.hosts) {
          if (h.unreachable)
            io.stdout.write(`${h.host}: UNREACHABLE ${h.error?.replace(/^unreachable: /, '')}\n`)
          else if (h.error) io.stdout.write(`${h.host}: ERROR ${h.error}\n`)
          else
            io.stdout.write(
              `${h.host}: current ${h.current ?? '(none)'}, ${h.releases} release(s), ${h.health ?? 'no checks configured'}, ${h.freeMb} MB free, ${h.usedMb} MB used\n`
            )
        }
        for (const d of st.databases)
          io.stdout.write(
            `database ${d.label} (${d.engine}): ${d.bytes !== undefined ? `${(d.bytes / 1024 / 1024).toFixed(1)} MiB` : `size unknown: ${d.error ?? '?'}`}\n`
          )
        io.stdout.write(`lock: ${describeLock(st.lock)}${fleetLock(loaded, st.lock.host)}\n`)
      }
      return st.hosts.some(h => h.error || h.healthy === false) || st.lock.state === 'unknown'
        ? ExitCode.failedNothingChanged
        : 0
    }
    // lock
    const info = sub === 'status' ? await getLock(ctx) : await forceReleaseLock(ctx)
    if (o.json) io.stdout.write(JSON.stringify(info, null, 2) + '\n')
    else if (sub === 'status')
      io.stdout.write(`lock on ${info.host}: ${describeLock(info)}${fleetLock(loaded, info.host)}\n`)
    else
      io.stdout.write(
        info.state === 'free'
          ? `lock on ${info.host} was not held\n`
          : `released the lock on ${info.host} held by ${describeOwner(info.owner)}\n`
      )
    return 0
  } catch (e) {
    if (e instanceof ConfigError) {
      io.stderr.write(`safe-deploy: ${e.message}\n`)
      return ExitCode.badInput
    }
    io.stderr.write(`safe-deploy ${command}: ${errorMessage(e)}\n`)
    return ExitCode.failedNothingChanged
  }
}

/** For a fleet: where the one lock lives. */
function fleetLock(loaded: LoadedConfig, host: string): string {
  return loaded.hosts.length > 1 || loaded.lockHost
    ? ` (on the primary ${host}: one lock for the whole fleet)`
    : ''
}

function describeOwner(
  o: { who?: string; run?: string; started?: string; expires?: string; command?: string } | undefined
): string {
  if (!o) return 'unknown'
  return `${o.who ?? 'unknown'}${o.run ? ` (${o.run})` : ''}, ${o.command ?? '?'} since ${o.started ?? '?'}, expires ${o.expires ?? '?'}`
}

function describeLock(l: {
  state: string
  owner?: Parameters<typeof describeOwner>[0]
  error?: string
}): string {
  if (l.state === 'free') return 'free'
  if (l.state === 'unknown') return `UNKNOWN: ${l.error ?? 'the primary cannot be reached'}`
  return `${l.state === 'expired' ? 'EXPIRED, ' : ''}held by ${describeOwner(l.owner)}`
}

/** `logs` options: --since (a duration, default 10m), --lines (default 100), --follow. */
function parseLogsArgs(o: { since?: string; lines?: string; follow?: boolean }) {
  const sinceMs = parseDuration(o.since ?? '10m')
  if (sinceMs === undefined)
    throw new ConfigError(`--since: expected a duration like 30m, 1h or 90s, got ${JSON.stringify(o.since)}`)
  const lines = o.lines === undefined ? 100 : /^\d{1,7}$/.test(o.lines) ? Number(o.lines) : NaN
  if (!Number.isInteger(lines) || lines < 1)
    throw new ConfigError(`--lines: expected a number of lines (1 or more), got ${JSON.stringify(o.lines)}`)
  return { sinceMs, lines, follow: !!o.follow }
}
