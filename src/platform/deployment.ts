import type { RunEvent, RunSubscriber } from '../engine/events.js'
import type { RunCommand } from '../pipeline/result.js'
import { errorMessage } from '../core/errors.js'

/** Inputs `github-deployment`, `environment`, `environment-url` (README "GitHub Deployments"). */
export interface DeploymentOptions {
  environment: string
  environmentUrl?: string
}

export type DeploymentState = 'in_progress' | 'success' | 'failure' | 'inactive'

/** A deployment as the REST API lists it: what finding one needs. */
export interface DeploymentRecord {
  id: number
  sha: string
  payload: unknown
}

/** The Deployments REST calls the Action makes (octokit in the Action, a fake in unit tests). */
export interface DeploymentsApi {
  create(params: DeploymentRequest): Promise<{ id: number }>
  setStatus(id: number, params: StatusRequest): Promise<void>
  list(environment: string): Promise<DeploymentRecord[]>
}

/** What safe-deploy writes into a deployment's payload, so that a later rollback can find it. */
export interface SafeDeployPayload {
  safe_deploy: { app?: string; command: RunCommand; release?: string; previous?: string }
}

export interface DeploymentRequest {
  ref: string
  environment: string
  auto_merge: false
  required_contexts: string[]
  transient_environment: false
  production_environment: boolean
  description: string
  payload: SafeDeployPayload
}

export interface StatusRequest {
  state: DeploymentState
  description?: string
  log_url?: string
  environment_url?: string
}

/** GitHub refuses a status description longer than 140 characters. */
export function statusDescription(text: string, max = 140): string {
  const one = text.replace(/\s+/g, ' ').trim()
  return one.length <= max ? one : `${one.slice(0, max - 1)}…`
}

/** The run's page: `<server>/<repo>/actions/runs/<run id>`; unset outside a run. */
export function runUrl(env: NodeJS.ProcessEnv): string | undefined {
  if (!env.GITHUB_REPOSITORY || !env.GITHUB_RUN_ID) return undefined
  return `${env.GITHUB_SERVER_URL || 'https://github.com'}/${env.GITHUB_REPOSITORY}/actions/runs/${env.GITHUB_RUN_ID}`
}

export function deploymentRequest(
  opts: DeploymentOptions,
  ref: string,
  payload: SafeDeployPayload['safe_deploy']
): DeploymentRequest {
  return {
    ref,
    environment: opts.environment,
    auto_merge: false,
    required_contexts: [],
    transient_environment: false,
    production_environment: /^production$/i.test(opts.environment),
    description: statusDescription(
      `safe-deploy ${payload.command}${payload.release ? ` of ${payload.release}` : ''}`
    ),
    payload: { safe_deploy: payload }
  }
}

/** The release a deployment's payload names (the payload may come back as a JSON string). */
export function payloadRelease(payload: unknown): string | undefined {
  let p = payload
  if (typeof p === 'string') {
    try {
      p = JSON.parse(p)
    } catch {
      return undefined
    }
  }
  const release = (p as Partial<SafeDeployPayload> | null)?.safe_deploy?.release
  return typeof release === 'string' ? release : undefined
}

/**
 * The newest deployment of `release` among `deployments` (newest first, as the API lists them): by the
 * release id in its payload, else (a deployment made by something else) by the commit the release id ends with.
 */
export function findDeployment(
  deployments: DeploymentRecord[],
  release: string
): DeploymentRecord | undefined {
  const byPayload = deployments.find(d => payloadRelease(d.payload) === release)
  if (byPayload) return byPayload
  const short = /-([0-9a-f]{7,40})$/.exec(release)?.[1]
  return short
    ? deployments.find(d => payloadRelease(d.payload) === undefined && d.sha.startsWith(short))
    : undefined
}

/** Missing `deployments: write` shows as 403 (or 404 for a token that cannot see the repository). */
function permissionProblem(e: unknown): boolean {
  const status = (e as { status?: number })?.status
  return status === 403 || status === 404
}

/**
 * A GitHub deployment for a deploy or rollback run: created (with the release id in its payload) once the
 * release is known, `in_progress`, then `success` or `failure` with the verdict; a successful rollback marks
 * the deployment of the release it left `inactive`. The first API error is one warning and the deployment
 * is given up; the run never changes for it.
 */
export function deploymentSubscriber(
  opts: DeploymentOptions,
  api: () => DeploymentsApi,
  warn: (message: string) => void,
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 30_000,
  /** Told the deployment's id once it is created (the Action saves it for its post step). */
  onCreated?: (id: number) => void
): RunSubscriber {
  let command: RunCommand | undefined
  let app: string | undefined
  let id: number | undefined
  let broken = false
  const logUrl = runUrl(env)
  const status = (state: DeploymentState, description?: string): StatusRequest => ({
    state,
    ...(description ? { description: statusDescription(description) } : {}),
    ...(logUrl ? { log_url: logUrl } : {}),
    ...(opts.environmentUrl && state !== 'inactive' ? { environment_url: opts.environmentUrl } : {})
  })
  /**
   * Runs one API step, within `timeoutMs` (an API that never answers must not hold the run's end); the first
   * failure is the one warning and ends the deployment's updates.
   */
  const call = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
    if (broken) return undefined
    let timer: NodeJS.Timeout | undefined
    try {
      return await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs / 1000} s`)), timeoutMs)
        })
      ])
    } catch (e) {
      broken = true
      warn(
        permissionProblem(e)
          ? `GitHub deployment for environment ${opts.environment}: ${what} was refused (HTTP ${(e as { status: number }).status}): the token needs \`permissions: deployments: write\` (or set github-deployment: off); the ${command ?? 'run'} goes on without it`
          : `GitHub deployment for environment ${opts.environment}: ${what} failed (${errorMessage(e)}); the ${command ?? 'run'} goes on without it`
      )
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }
  const start = async (release: string | undefined, previous: string | undefined) => {
    if (!command) return
    let ref = env.GITHUB_SHA
    if (command === 'rollback' && release) {
      // the commit of the release put back, when a deployment of it can be found
      const found = await call('listing deployments', async () =>
        findDeployment(await api().list(opts.environment), release)
      )
      if (found) ref = found.sha
    }
    if (!ref) {
      broken = true
      warn('GitHub deployment: GITHUB_SHA is not set, so there is no commit to deploy; none is recorded')
      return
    }
    const sha = ref
    const made = await call('creating the deployment', () =>
      api().create(deploymentRequest(opts, sha, { app, command: command as RunCommand, release, previous }))
    )
    id = made?.id
    const madeId = id
    if (madeId !== undefined) onCreated?.(madeId)
    if (madeId !== undefined)
      await call('setting in_progress', () => api().setStatus(madeId, status('in_progress')))
  }
  return {
    name: 'the GitHub deployment',
    async on(e: RunEvent) {
      if (e.type === 'run-started') {
        if (e.command === 'deploy' || e.command === 'rollback') command = e.command
        app = e.app
      } else if (e.type === 'release-chosen') {
        if (id === undefined) await start(e.release, e.previous)
      } else if (e.type === 'run-finished' && command) {
        const r = e.result
        // a deploy that failed before its release was known still gets its record, failed
        if (id === undefined && command === 'deploy') await start(r.release, r.previousRelease)
        const done = id
        if (done === undefined) return
        const ok = r.status === 'success'
        await call(`setting ${ok ? 'success' : 'failure'}`, () =>
          api().setStatus(done, status(ok ? 'success' : 'failure', r.verdict))
        )
        const left = r.previousRelease
        if (command === 'rollback' && ok && left) {
          const old = await call('listing deployments', async () =>
            findDeployment(await api().list(opts.environment), left)
          )
          if (old && old.id !== done)
            await call('setting inactive', () =>
              api().setStatus(old.id, status('inactive', `rolled back from ${left}`))
            )
        }
      }
    }
  }
}

/**
 * The post step that finished a killed main step's run (src/platform/github.ts `runPost`): the deployment the
 * main step left `in_progress` gets `failure` with what the post step did. Never throws: a failure is one warning.
 */
export async function closeDeployment(
  opts: DeploymentOptions,
  api: DeploymentsApi,
  id: number,
  description: string,
  warn: (message: string) => void,
  env: NodeJS.ProcessEnv = process.env
): Promise<void> {
  const logUrl = runUrl(env)
  try {
    await api.setStatus(id, {
      state: 'failure',
      description: statusDescription(description),
      ...(logUrl ? { log_url: logUrl } : {}),
      ...(opts.environmentUrl ? { environment_url: opts.environmentUrl } : {})
    })
  } catch (e) {
    warn(
      `GitHub deployment ${id} for environment ${opts.environment}: setting failure after the interrupted run failed (${errorMessage(e)}); it stays in_progress`
    )
  }
}
