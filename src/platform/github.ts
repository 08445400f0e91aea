import * as core from '@actions/core'
import { DefaultArtifactClient } from '@actions/artifact'
import { loadConfig, requireEnv, type LoadedConfig } from '../config/load.js'
import { ConfigError, ExitCode } from '../core/exit.js'
import { defaultActor } from './actor.js'
import {
  deploy,
  newContext,
  planRollback,
  releaseList,
  rollback,
  type ListedRelease
} from '../flows/deploy.js'
import {
  type StatusReport,
  describeLock,
  getStatus,
  releaseOwnLock,
  statusLines,
  statusOk
} from '../flows/status.js'
import { planDeploy } from '../flows/plan.js'
import { parseProgress } from '../pipeline/progress.js'
import { finishInterrupted, needsFinishing } from '../flows/interrupted.js'
import type { RunResult } from '../pipeline/result.js'
import { errorMessage } from '../core/errors.js'
import type { Reporter } from '../report/log.js'
import { parseGithubInputs, parseInputs, type GithubInputs } from './inputs.js'
import { artifactName, uploadRunArtifact, type UploadedArtifact } from './artifact.js'
import { closeDeployment, deploymentSubscriber } from './deployment.js'
import { octokitDeployments } from './octokit.js'
import { hostAnnotations, hostRows } from './hosts.js'
import { backupList, backupNow } from '../flows/backup.js'
import { outputsOf } from './outputs.js'
import { githubCache } from './cache.js'
import { onEvent, type RunSubscriber } from '../engine/events.js'

const STATE_TOKEN = 'lock-token'
/** The run's progress (src/pipeline/progress.ts), for the post step to finish a killed main step. */
const STATE_PROGRESS = 'progress'
/** The GitHub deployment the main step created, for the post step to close when it finishes a killed run. */
const STATE_DEPLOYMENT = 'deployment-id'

/**
 * GitHub log: one collapsible group per stage, warnings as annotations. Error lines stay plain log lines: a
 * failure gets one annotation, its verdict (setFailed), not one per line that mentions it.
 */
function githubReporter(): Reporter {
  let open = false
  return {
    info: line => core.info(line),
    warn: line => core.warning(line),
    error: line => core.info(line),
    startGroup: title => {
      if (open) core.endGroup()
      core.startGroup(title)
      open = true
    },
    endGroup: () => {
      if (open) core.endGroup()
      open = false
    }
  }
}

const read = (name: string) => core.getInput(name)

function setOutputs(r: RunResult): void {
  for (const [k, v] of Object.entries(outputsOf(r))) core.setOutput(k, v)
}

const html = (t: string) =>
  t.replace(/[&<>"]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c)

/**
 * The step's outputs, its GitHub deployment, the artifact and the job summary, for every run (deploy,
 * rollback, backup): in this order, so that the summary can link the artifact.
 */
function githubResult(gh: GithubInputs): RunSubscriber[] {
  let artifact: UploadedArtifact | undefined
  return [
    onEvent('the step outputs', 'run-finished', e => setOutputs(e.result)),
    ...(gh.deployment === 'own' && gh.environment
      ? [
          deploymentSubscriber(
            { environment: gh.environment, environmentUrl: gh.environmentUrl },
            octokitDeployments(gh.token),
            m => core.warning(m),
            process.env,
            undefined,
            id => core.saveState(STATE_DEPLOYMENT, String(id))
          )
        ]
      : []),
    onEvent('the artifact', 'run-finished', async e => {
      artifact = await uploadRunArtifact(
        e.result,
        {
          upload: gh.upload,
          name: artifactName(process.env, gh.artifactName),
          retentionDays: gh.retentionDays
        },
        async () => new DefaultArtifactClient(),
        m => core.warning(m)
      )
      core.setOutput('artifact-id', artifact ? String(artifact.id) : '')
      core.setOutput('artifact-url', artifact?.url ?? '')
    }),
    onEvent('the job summary', 'run-finished', e => writeSummary(e.result, artifact))
  ]
}

/** `database revision a1 → b2`: what the migration did, as far as the result tells. */
function revisionLine(r: RunResult): string | undefined {
  const v = r.revision
  if (!v || (v.before === undefined && v.after === undefined)) return undefined
  const shown = (x?: string) => `<code>${html(x || '(none)')}</code>`
  const moved =
    v.after === undefined ? `${shown(v.before)} → unknown` : `${shown(v.before)} → ${shown(v.after)}`
  const then = r.status === 'success' ? '' : r.rolledBack ? ' (then undone by the rollback)' : ''
  return `database revision ${moved}${then}`
}

async function writeSummary(r: RunResult, artifact: UploadedArtifact | undefined): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const icon = r.status === 'success' ? '✅' : r.status === 'rolled-back' ? '↩️' : '❌'
  const facts = [
    `release <code>${r.release ?? '-'}</code>, previous <code>${r.previousRelease ?? '-'}</code>, hosts ${r.hosts.join(', ')}`,
    r.backupName ? `backup <code>${html(r.backupName)}</code>` : undefined,
    revisionLine(r),
    artifact
      ? artifact.url
        ? `log and report: <a href="${html(artifact.url)}">artifact ${artifact.id}</a>`
        : `log and report: artifact ${artifact.id}`
      : undefined
  ].filter((x): x is string => !!x)
  const summary = core.summary.addHeading(`${icon} safe-deploy ${r.command}: ${r.status}`, 3).addTable([
    [
      { data: 'stage', header: true },
      { data: 'status', header: true },
      { data: 'time', header: true },
      { data: 'detail', header: true }
    ],
    ...r.stages.map(s => [s.name, s.status, `${s.duration_s.toFixed(1)} s`, s.error?.split('\n')[0] || '-'])
  ])
  const rows = hostRows(r)
  if (rows.length)
    summary.addTable([
      ['host', 'result', 'stage', 'release before → after', 'detail'].map(data => ({ data, header: true })),
      ...rows.map(h => [
        html(h.name),
        h.result,
        h.stage ?? '-',
        `${h.before ?? '-'} → ${h.after ?? '-'}`,
        html(h.error?.split('\n')[0] || '-')
      ])
    ])
  await summary.addRaw(facts.join('<br>'), true).addBreak().addRaw(r.verdict, true).write()
}

/**
 * A failed run's annotations: with several failed hosts one per host (titled with the host and its stage, at
 * most ten), and the verdict as the step's failure message; with one or none, the verdict alone (setFailed),
 * which names the host.
 */
function failRun(r: RunResult): void {
  const message = `${r.verdict} (exit ${r.exitCode}; log: ${r.logFile})`
  const { annotations, more } = hostAnnotations(r)
  if (!annotations.length) return fail(message, r.exitCode)
  for (const a of annotations) core.error(a.message, { title: a.title })
  if (more) core.info(`${more} more hosts failed: see the job summary`)
  core.info(message)
  process.exitCode = r.exitCode
}

/** A summary table: a header row, then plain-text cells (escaped here). */
const summaryTable = (header: string[], rows: string[][]) => [
  header.map(data => ({ data, header: true })),
  ...rows.map(r => r.map(html))
]

/**
 * `command: status`: the terminal's lines in the log, a job summary table, and outputs: `status` (success when
 * every host is reachable and healthy), `release` (current on the primary) and `status-json` (compact JSON).
 */
async function showStatus(st: StatusReport, loaded: LoadedConfig): Promise<void> {
  const ok = statusOk(st)
  for (const line of statusLines(st, loaded)) core.info(line)
  core.setOutput('status', ok ? 'success' : 'failed')
  core.setOutput('status-json', JSON.stringify(st))
  const primary = st.hosts.find(h => h.host === st.lock.host) ?? st.hosts[0]
  core.setOutput('release', primary?.current ?? '')
  if (!ok) process.exitCode = ExitCode.failedNothingChanged
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const rows = st.hosts.map(h => [
    h.host,
    h.unreachable ? 'UNREACHABLE' : (h.current ?? '-'),
    String(h.releases),
    h.error ?? h.health ?? 'no checks configured',
    h.freeMb === undefined ? '-' : `${h.freeMb} MB`
  ])
  await core.summary
    .addHeading(`${ok ? '✅' : '❌'} safe-deploy status`, 3)
    .addTable(summaryTable(['host', 'current', 'releases', 'health', 'free disk'], rows))
    .addRaw(html(`lock: ${describeLock(st.lock)}`), true)
    .write()
}

/**
 * `command: releases`: every release, newest first, as the `releases` output (compact JSON, for a rollback
 * workflow to pick a `to` from), a job summary table and the log.
 */
async function showReleases(list: ListedRelease[]): Promise<void> {
  core.setOutput('releases', JSON.stringify(list))
  core.setOutput('status', 'success')
  const rows = list.map(r => [
    r.release,
    r.current.join(', ') || '-',
    r.state,
    r.actor ?? '-',
    r.commit?.slice(0, 7) ?? '-',
    r.deployed ?? '-'
  ])
  for (const r of rows) core.info(r.join('  '))
  if (!list.length) core.info('no releases')
  if (!process.env.GITHUB_STEP_SUMMARY) return
  await core.summary
    .addHeading('safe-deploy releases', 3)
    .addTable(summaryTable(['release', 'current on', 'state', 'deployed by', 'commit', 'finished'], rows))
    .addRaw('Roll back to one with <code>command: rollback</code> and <code>to: RELEASE</code>.', true)
    .write()
}

/** `command: backups`: the primary's backups as the `backups` output (compact JSON), a summary table, the log. */
async function showBackups(l: Awaited<ReturnType<typeof backupList>>): Promise<void> {
  core.setOutput('backups', JSON.stringify(l.backups))
  core.setOutput('status', 'success')
  const rows = l.backups.map(b => [
    b.name,
    b.size,
    b.age,
    b.encrypted ? 'yes' : 'no',
    b.verified,
    b.for || '-'
  ])
  for (const r of rows) core.info(r.join('  '))
  if (!rows.length) core.info(`no backups in ${l.dir} on ${l.host}`)
  if (!process.env.GITHUB_STEP_SUMMARY) return
  await core.summary
    .addHeading(`safe-deploy backups on ${html(l.host)}`, 3)
    .addTable(summaryTable(['name', 'size', 'age', 'encrypted', 'verified', 'for'], rows))
    .addRaw(`in <code>${html(l.dir)}</code>`, true)
    .write()
}

/**
 * A cancelled job: the runner sends SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that. Both signals stop
 * the run at once, which then undoes what it changed (as the CLI does, src/cli.ts); what a SIGKILL cuts short,
 * the post step finishes from the saved progress.
 */
function onCancel(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController()
  let signals = 0
  const handlers = (['SIGINT', 'SIGTERM'] as const).map(sig => {
    const handler = () => {
      signals++
      core.info(
        `safe-deploy: ${sig} received; stopping and undoing what this run changed${signals > 1 ? ' (already stopping)' : ''}`
      )
      controller.abort(new Error(sig))
    }
    process.on(sig, handler)
    return () => process.off(sig, handler)
  })
  return { signal: controller.signal, dispose: () => handlers.forEach(off => off()) }
}

/** Fails the step with the verdict (the one annotation of the failure) and the run's exit code. */
function fail(message: string, exitCode: number): void {
  core.setFailed(message)
  process.exitCode = exitCode
}

/** The Action's main step. */
export async function runAction(): Promise<void> {
  const cancel = onCancel()
  try {
    const inputs = parseInputs(read)
    const gh = parseGithubInputs(read)
    if (gh.token) core.setSecret(gh.token)
    const loaded = loadConfig(inputs.config, inputs.overrides)
    for (const s of loaded.secrets) core.setSecret(s)
    requireEnv(loaded, inputs.command, {
      sub: inputs.command === 'backups' ? 'list' : undefined,
      restore: !!inputs.restore,
      noDb: inputs.noDb
    })
    const req = {
      loaded,
      reporter: githubReporter(),
      actor: defaultActor(),
      verbose: inputs.verbose,
      waitLockMs: inputs.waitLockMs,
      signal: cancel.signal,
      onLock: (token: string | undefined) => core.saveState(STATE_TOKEN, token ?? ''),
      onProgress: (p: unknown) => core.saveState(STATE_PROGRESS, JSON.stringify(p)),
      subscribers: githubResult(gh),
      redeploy: inputs.redeploy,
      buildCache: loaded.config.cache ? githubCache() : undefined
    }
    const rollbackReq = { ...req, to: inputs.to, restore: inputs.restore, noDb: inputs.noDb, yes: inputs.yes }
    if (inputs.command === 'rollback' && inputs.dryRun) {
      core.info(await planRollback(rollbackReq))
      return
    }
    if (inputs.command === 'deploy' || inputs.command === 'rollback' || inputs.command === 'backup') {
      // the outputs and the job summary are set by the run's subscribers (githubResult)
      const r =
        inputs.command === 'deploy'
          ? await deploy(req)
          : inputs.command === 'rollback'
            ? await rollback(rollbackReq)
            : await backupNow(req)
      if (r.exitCode !== ExitCode.ok) failRun(r)
      else if (inputs.command === 'backup') core.info(r.verdict)
      return
    }
    if (inputs.command === 'releases') {
      await showReleases(await releaseList(req))
      return
    }
    if (inputs.command === 'backups') {
      await showBackups(await backupList(req))
      return
    }
    const ctx = newContext(req, inputs.command, new Date(), false)
    if (inputs.command === 'plan') core.info((await planDeploy(req)).text)
    else if (inputs.command === 'status') {
      await showStatus(await getStatus(ctx), loaded)
    } else {
      throw new ConfigError(
        `input command ${inputs.command}: use the CLI (npx safe-deploy ${inputs.command})`
      )
    }
  } catch (e) {
    core.setOutput('status', 'failed')
    if (e instanceof ConfigError) fail(e.message, ExitCode.badInput)
    else fail(`safe-deploy: ${errorMessage(e)}`, ExitCode.failure)
  } finally {
    cancel.dispose()
  }
}

/** The GitHub inputs, read again by the post step (the main step refused them when they were bad). */
function githubInputsOrNone(): GithubInputs | undefined {
  try {
    return parseGithubInputs(read)
  } catch {
    return undefined
  }
}

/**
 * The Action's post step (runs also when the job was cancelled). When the main step was killed before it
 * finished (its saved progress says so), it finishes the run: src/flows/interrupted.ts. When the main step
 * ended while still holding the lock, it releases it.
 */
export async function runPost(): Promise<void> {
  const progress = parseProgress(core.getState(STATE_PROGRESS))
  const token = core.getState(STATE_TOKEN)
  if (needsFinishing(progress, token)) {
    core.info(
      `safe-deploy: the main step was stopped during ${progress.stage} before it finished (cancelled?): finishing its ${progress.command}`
    )
    try {
      const inputs = parseInputs(read)
      const loaded = loadConfig(inputs.config, inputs.overrides)
      for (const s of loaded.secrets) core.setSecret(s)
      const ctx = newContext(
        { loaded, reporter: githubReporter(), actor: progress.actor },
        'post',
        new Date()
      )
      const r = await finishInterrupted(ctx, progress)
      const clean = (t: string) => ctx.log.redactor.redact(t)
      const esc = (t: string) => html(clean(t))
      const heading = r.ok
        ? `↩️ safe-deploy post step: finished the interrupted ${progress.command}`
        : `❌ safe-deploy post step: the interrupted ${progress.command} needs a person`
      if (process.env.GITHUB_STEP_SUMMARY) {
        await core.summary
          .addHeading(heading, 3)
          .addRaw(
            `The main step was stopped during <code>${esc(progress.stage)}</code> before it finished.`,
            true
          )
          .addList([...r.done, ...(r.problem ? [r.problem] : [])].map(esc))
          .addRaw(ctx.log.file ? `log: <code>${esc(ctx.log.file)}</code>` : '', true)
          .write()
      }
      const what = clean(
        `safe-deploy: the ${progress.command} was stopped during ${progress.stage}; ${r.done.join('; ')}`
      )
      const deployment = Number(core.getState(STATE_DEPLOYMENT))
      const gh = deployment ? githubInputsOrNone() : undefined
      if (gh?.deployment === 'own' && gh.environment) {
        if (gh.token) core.setSecret(gh.token)
        await closeDeployment(
          { environment: gh.environment, environmentUrl: gh.environmentUrl },
          octokitDeployments(gh.token)(),
          deployment,
          r.ok
            ? what.replace(/^safe-deploy: /, '')
            : `${what.replace(/^safe-deploy: /, '')}; ${clean(r.problem ?? '')}`,
          m => core.warning(m)
        )
      }
      if (r.ok) core.warning(what)
      else fail(`${what}; ${clean(r.problem ?? '')}`, ExitCode.rollbackFailed)
    } catch (e) {
      fail(
        `safe-deploy: could not finish the interrupted ${progress.command}: ${errorMessage(e)}; run \`safe-deploy status\` and \`safe-deploy releases\``,
        ExitCode.rollbackFailed
      )
    }
    return
  }
  if (!token) return
  core.warning('the main step ended while holding the deploy lock (cancelled?): releasing it')
  try {
    const inputs = parseInputs(read)
    const loaded = loadConfig(inputs.config, inputs.overrides)
    for (const s of loaded.secrets) core.setSecret(s)
    const ctx = newContext(
      { loaded, reporter: githubReporter(), actor: defaultActor() },
      'post',
      new Date(),
      false
    )
    const state = await releaseOwnLock(ctx, token)
    core.info(state === 'released' ? 'lock released' : `lock not released: ${state}`)
  } catch (e) {
    core.warning(`could not release the lock: ${errorMessage(e)}; run \`safe-deploy lock release\``)
  }
}
