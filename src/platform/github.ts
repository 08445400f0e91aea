import * as core from '@actions/core'
import { loadConfig, requireEnv } from '../config/load.js'
import { ConfigError, ExitCode } from '../core/exit.js'
import { defaultActor } from './actor.js'
import { deploy, newContext, planRollback, rollback } from '../flows/deploy.js'
import { getStatus, releaseOwnLock } from '../flows/status.js'
import { planDeploy } from '../flows/plan.js'
import { parseProgress } from '../pipeline/progress.js'
import { finishInterrupted, needsFinishing } from '../flows/interrupted.js'
import type { RunResult } from '../pipeline/result.js'
import { errorMessage } from '../core/errors.js'
import type { Reporter } from '../report/log.js'
import { parseInputs } from './inputs.js'
import { backupNow } from '../flows/backup.js'
import { outputsOf } from './outputs.js'
import { onEvent, type RunSubscriber } from '../engine/events.js'

const STATE_TOKEN = 'lock-token'
/** The run's progress (src/pipeline/progress.ts), for the post step to finish a killed main step. */
const STATE_PROGRESS = 'progress'

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

/** The step's outputs and its job summary, for every run (deploy, rollback, backup): told the result. */
const githubResult: RunSubscriber[] = [
  onEvent('the step outputs', 'run-finished', e => setOutputs(e.result)),
  onEvent('the job summary', 'run-finished', e => writeSummary(e.result))
]

async function writeSummary(r: RunResult): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const icon = r.status === 'success' ? '✅' : r.status === 'rolled-back' ? '↩️' : '❌'
  await core.summary
    .addHeading(`${icon} safe-deploy ${r.command}: ${r.status}`, 3)
    .addTable([
      [
        { data: 'stage', header: true },
        { data: 'status', header: true },
        { data: 'time', header: true },
        { data: 'detail', header: true }
      ],
      ...r.stages.map(s => [s.name, s.status, `${s.duration_s.toFixed(1)} s`, s.error?.split('\n')[0] || '-'])
    ])
    .addRaw(
      `release <code>${r.release ?? '-'}</code>, previous <code>${r.previousRelease ?? '-'}</code>, hosts ${r.hosts.join(', ')}`,
      true
    )
    .addBreak()
    .addRaw(r.verdict, true)
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
    const loaded = loadConfig(inputs.config, inputs.overrides)
    for (const s of loaded.secrets) core.setSecret(s)
    requireEnv(loaded, inputs.command, { restore: !!inputs.restore, noDb: inputs.noDb })
    const req = {
      loaded,
      reporter: githubReporter(),
      actor: defaultActor(),
      verbose: inputs.verbose,
      waitLockMs: inputs.waitLockMs,
      signal: cancel.signal,
      onLock: (token: string | undefined) => core.saveState(STATE_TOKEN, token ?? ''),
      onProgress: (p: unknown) => core.saveState(STATE_PROGRESS, JSON.stringify(p)),
      subscribers: githubResult
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
      if (r.exitCode !== ExitCode.ok) fail(`${r.verdict} (exit ${r.exitCode}; log: ${r.logFile})`, r.exitCode)
      else if (inputs.command === 'backup') core.info(r.verdict)
      return
    }
    const ctx = newContext(req, inputs.command, new Date(), false)
    if (inputs.command === 'plan') core.info((await planDeploy(req)).text)
    else if (inputs.command === 'status') {
      const st = await getStatus(ctx)
      core.info(JSON.stringify(st, null, 2))
      core.setOutput('status', st.hosts.every(h => !h.error && h.healthy !== false) ? 'success' : 'failed')
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
      const html = (t: string) =>
        clean(t).replace(/[&<>"]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c)
      const heading = r.ok
        ? `↩️ safe-deploy post step: finished the interrupted ${progress.command}`
        : `❌ safe-deploy post step: the interrupted ${progress.command} needs a person`
      if (process.env.GITHUB_STEP_SUMMARY) {
        await core.summary
          .addHeading(heading, 3)
          .addRaw(
            `The main step was stopped during <code>${html(progress.stage)}</code> before it finished.`,
            true
          )
          .addList([...r.done, ...(r.problem ? [r.problem] : [])].map(html))
          .addRaw(ctx.log.file ? `log: <code>${html(ctx.log.file)}</code>` : '', true)
          .write()
      }
      const what = clean(
        `safe-deploy: the ${progress.command} was stopped during ${progress.stage}; ${r.done.join('; ')}`
      )
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
