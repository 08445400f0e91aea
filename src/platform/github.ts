import * as core from '@actions/core'
import { loadConfig } from '../config/load.js'
import { ConfigError, ExitCode } from '../config/errors.js'
import { deploy, newContext, planRollback, rollback } from '../pipeline/run.js'
import { getStatus, planDeploy, releaseOwnLock } from '../pipeline/ops.js'
import type { RunResult } from '../pipeline/result.js'
import { errorMessage } from '../pipeline/errors.js'
import type { Reporter } from '../report/log.js'
import { parseInputs } from './inputs.js'
import { backupNow } from '../backup/cli.js'
import { outputsOf } from './outputs.js'

const STATE_TOKEN = 'lock-token'
const STATE_DONE = 'main-finished'

/** GitHub log: one collapsible group per stage, warnings and errors as annotations. */
function githubReporter(): Reporter {
  let open = false
  return {
    info: line => core.info(line),
    warn: line => core.warning(line),
    error: line => core.error(line),
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

/** The Action's main step. */
export async function runAction(): Promise<void> {
  try {
    const inputs = parseInputs(read)
    const loaded = loadConfig(inputs.config, inputs.overrides)
    for (const s of loaded.secrets) core.setSecret(s)
    const req = {
      loaded,
      reporter: githubReporter(),
      verbose: inputs.verbose,
      onLock: (token: string | undefined) => core.saveState(STATE_TOKEN, token ?? '')
    }
    const rollbackReq = { ...req, to: inputs.to, restore: inputs.restore, noDb: inputs.noDb, yes: inputs.yes }
    if (inputs.command === 'rollback' && inputs.dryRun) {
      core.saveState(STATE_DONE, 'true')
      core.info(await planRollback(rollbackReq))
      return
    }
    if (inputs.command === 'deploy' || inputs.command === 'rollback') {
      const r = inputs.command === 'deploy' ? await deploy(req) : await rollback(rollbackReq)
      setOutputs(r)
      await writeSummary(r)
      core.saveState(STATE_DONE, 'true')
      if (r.exitCode !== ExitCode.ok) core.setFailed(`${r.verdict} (exit ${r.exitCode}; log: ${r.logFile})`)
      else core.info(r.verdict)
      return
    }
    if (inputs.command === 'backup') {
      const r = await backupNow(req)
      core.setOutput('status', r.status)
      core.setOutput('backup-name', r.backupName ?? '')
      core.setOutput('backup-path', r.backupPath ?? '')
      core.setOutput('log-file', r.logFile ?? '')
      core.setOutput('exit-code', String(r.exitCode))
      core.saveState(STATE_DONE, 'true')
      if (r.exitCode !== ExitCode.ok) core.setFailed(`${r.verdict} (exit ${r.exitCode}; log: ${r.logFile})`)
      else core.info(r.verdict)
      return
    }
    const ctx = newContext(req, inputs.command, new Date(), false)
    core.saveState(STATE_DONE, 'true')
    if (inputs.command === 'plan') core.info(planDeploy(ctx))
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
    core.saveState(STATE_DONE, 'true')
    core.setOutput('status', 'failed')
    core.setFailed(e instanceof ConfigError ? e.message : `safe-deploy: ${errorMessage(e)}`)
  }
}

/** The Action's post step: when the main step was cancelled while holding our lock, release it. */
export async function runPost(): Promise<void> {
  const token = core.getState(STATE_TOKEN)
  if (!token) return
  core.warning('the main step ended while holding the deploy lock (cancelled?): releasing it')
  try {
    const inputs = parseInputs(read)
    const loaded = loadConfig(inputs.config, inputs.overrides)
    for (const s of loaded.secrets) core.setSecret(s)
    const ctx = newContext({ loaded, reporter: githubReporter() }, 'post', new Date(), false)
    const state = await releaseOwnLock(ctx, token)
    core.info(state === 'released' ? 'lock released' : `lock not released: ${state}`)
  } catch (e) {
    core.warning(`could not release the lock: ${errorMessage(e)}; run \`safe-deploy lock release\``)
  }
}
