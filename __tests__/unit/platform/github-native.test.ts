import { describe, expect, test } from '@jest/globals'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError } from '../../../src/core/exit.js'
import { parseGithubInputs } from '../../../src/platform/inputs.js'
import {
  artifactFiles,
  artifactName,
  artifactUrl,
  uploadRunArtifact,
  type ArtifactUploader
} from '../../../src/platform/artifact.js'
import {
  closeDeployment,
  deploymentRequest,
  deploymentSubscriber,
  findDeployment,
  payloadRelease,
  statusDescription,
  type DeploymentsApi,
  type StatusRequest
} from '../../../src/platform/deployment.js'
import { failedHosts, hostAnnotations, hostRows } from '../../../src/platform/hosts.js'
import type { RunResult } from '../../../src/pipeline/result.js'
import type { RunEvent } from '../../../src/engine/events.js'

const from = (values: Record<string, string>) => (name: string) => values[name] ?? ''

const result = (over: Partial<RunResult> = {}): RunResult => ({
  command: 'deploy',
  status: 'success',
  exitCode: 0,
  release: '20261201T100000Z-a1b2c3d',
  previousRelease: '20261130T100000Z-f00dfee',
  rolledBack: false,
  stages: [],
  hosts: ['web-1', 'web-2'],
  started: '2026-12-01T10:00:00.000Z',
  finished: '2026-12-01T10:00:05.000Z',
  durationS: 5,
  verdict: 'DEPLOYMENT SUCCESS (5.0 s)',
  ...over
})

const started = (command: RunResult['command']): RunEvent => ({
  type: 'run-started',
  command,
  app: 'shop',
  hosts: [],
  actor: 'a',
  started: ''
})

const env = {
  GITHUB_SERVER_URL: 'https://github.com',
  GITHUB_REPOSITORY: 'octo/shop',
  GITHUB_RUN_ID: '99',
  GITHUB_SHA: 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678',
  GITHUB_JOB: 'deploy',
  GITHUB_RUN_ATTEMPT: '2',
  ACTIONS_RUNTIME_TOKEN: 't',
  ACTIONS_RESULTS_URL: 'http://results/'
}

describe('parseGithubInputs', () => {
  test('defaults: upload on, no deployment without an environment', () => {
    expect(parseGithubInputs(from({}))).toEqual({
      upload: true,
      artifactName: undefined,
      retentionDays: undefined,
      deployment: 'off',
      environment: undefined,
      environmentUrl: undefined,
      token: ''
    })
  })
  test('an environment turns the own deployment on; off keeps it off', () => {
    expect(parseGithubInputs(from({ environment: 'production', 'github-token': 't' })).deployment).toBe('own')
    expect(
      parseGithubInputs(from({ environment: 'production', 'github-deployment': 'off' })).deployment
    ).toBe('off')
  })
  test.each([
    [{ 'upload-artifact': 'maybe' }, /upload-artifact/],
    [{ 'artifact-retention-days': '91' }, /1-90/],
    [{ 'artifact-retention-days': 'x' }, /1-90/],
    [{ 'github-deployment': 'theirs' }, /own or off/],
    [{ 'github-deployment': 'own' }, /needs input environment/],
    [{ environment: 'prod', 'environment-url': 'shop.example.com', 'github-token': 't' }, /http/],
    [{ environment: 'prod' }, /github-token is empty/]
  ])('bad input %j is refused', (values, message) => {
    expect(() => parseGithubInputs(from(values))).toThrow(ConfigError)
    expect(() => parseGithubInputs(from(values))).toThrow(message)
  })
})

describe('the artifact', () => {
  test('name: one per job attempt, or the input; characters the service refuses become -', () => {
    expect(artifactName(env)).toBe('safe-deploy-deploy-2')
    expect(artifactName(env, 'logs: a/b')).toBe('logs- a-b')
    expect(artifactUrl(env, 5)).toBe('https://github.com/octo/shop/actions/runs/99/artifacts/5')
    expect(artifactUrl({}, 5)).toBeUndefined()
  })

  test('files: the log, the report and this run’s downloaded backup, not other runs’ files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sd-art-'))
    for (const f of [
      'deploy_1.log',
      'deploy_1.json',
      'deploy_0.log',
      'shop_1.files.tar.gz',
      'shop_1.sha256',
      'shop_1.db.sql.gz.partial',
      'shop_0.files.tar.gz'
    ])
      writeFileSync(join(dir, f), f)
    const r = result({
      logFile: join(dir, 'deploy_1.log'),
      reportFile: join(dir, 'deploy_1.json'),
      backupName: 'shop_1'
    })
    expect(artifactFiles(r)).toEqual({
      root: dir,
      files: ['deploy_1.log', 'deploy_1.json', 'shop_1.files.tar.gz', 'shop_1.sha256'].map(f => join(dir, f))
    })
    expect(artifactFiles(result())).toBeUndefined()
  })

  test('upload: never throws; GHES, no service, a failure: one warning each, naming where the files are', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sd-art-'))
    writeFileSync(join(dir, 'deploy_1.log'), 'log')
    const r = result({ logFile: join(dir, 'deploy_1.log') })
    const opts = { upload: true, name: 'a', retentionDays: 3 }
    const calls: unknown[] = []
    const ok: ArtifactUploader = {
      uploadArtifact: async (...args) => {
        calls.push(args)
        return { id: 7 }
      }
    }
    const warned: string[] = []
    const warn = (m: string) => void warned.push(m)
    expect(await uploadRunArtifact(r, opts, async () => ok, warn, env)).toEqual({
      id: 7,
      url: 'https://github.com/octo/shop/actions/runs/99/artifacts/7'
    })
    expect(calls).toEqual([['a', [join(dir, 'deploy_1.log')], dir, { retentionDays: 3 }]])
    expect(await uploadRunArtifact(r, { ...opts, upload: false }, async () => ok, warn, env)).toBeUndefined()
    expect(warned).toEqual([])

    const ghes = Object.assign(new Error('not on GHES'), { name: 'GHESNotSupportedError' })
    const failing = (e: Error): ArtifactUploader => ({
      uploadArtifact: async () => {
        throw e
      }
    })
    expect(await uploadRunArtifact(r, opts, async () => failing(ghes), warn, env)).toBeUndefined()
    expect(
      await uploadRunArtifact(r, opts, async () => failing(new Error('HTTP 500')), warn, env)
    ).toBeUndefined()
    expect(
      await uploadRunArtifact(r, opts, async () => ok, warn, { ...env, ACTIONS_RESULTS_URL: '' })
    ).toBeUndefined()
    expect(warned).toHaveLength(3)
    expect(warned[0]).toMatch(/GitHub Enterprise Server has no artifact service/)
    expect(warned[1]).toMatch(/artifact a not uploaded \(HTTP 500\)/)
    expect(warned[2]).toMatch(/ACTIONS_RESULTS_URL is not set/)
    for (const w of warned) expect(w).toContain(`deploy_1.log in ${dir}`)
  })
})

describe('the deployment', () => {
  test('request: for the commit, no merge, no required contexts, production when the environment is', () => {
    expect(
      deploymentRequest({ environment: 'Production' }, 'abc', { command: 'deploy', release: 'r1' })
    ).toEqual({
      ref: 'abc',
      environment: 'Production',
      auto_merge: false,
      required_contexts: [],
      transient_environment: false,
      production_environment: true,
      description: 'safe-deploy deploy of r1',
      payload: { safe_deploy: { command: 'deploy', release: 'r1' } }
    })
    expect(
      deploymentRequest({ environment: 'staging' }, 'abc', { command: 'deploy' }).production_environment
    ).toBe(false)
  })

  test('description: one line, at most 140 characters', () => {
    expect(statusDescription('a\n  b')).toBe('a b')
    const long = statusDescription('x'.repeat(300))
    expect(long).toHaveLength(140)
    expect(long.endsWith('…')).toBe(true)
  })

  test('finding the deployment of a release: by payload, else by the commit its id ends with', () => {
    const list = [
      { id: 3, sha: 'f00dfee000', payload: { safe_deploy: { release: '20261130T100000Z-f00dfee' } } },
      { id: 2, sha: 'a1b2c3d999', payload: '' },
      { id: 1, sha: 'f00dfee000', payload: JSON.stringify({ safe_deploy: { release: 'old' } }) }
    ]
    expect(findDeployment(list, '20261130T100000Z-f00dfee')?.id).toBe(3)
    expect(findDeployment(list, '20261129T100000Z-a1b2c3d')?.id).toBe(2)
    expect(findDeployment(list, '20261129T100000Z-0000000')).toBeUndefined()
    expect(payloadRelease(list[2]?.payload)).toBe('old')
    expect(payloadRelease('{not json')).toBeUndefined()
  })

  /** A subscriber for environment prod whose warnings go nowhere. */
  const silent = (api: DeploymentsApi) =>
    deploymentSubscriber(
      { environment: 'prod' },
      () => api,
      () => undefined,
      env
    )

  /** A fake Deployments API that records its calls; `refuse` makes every call fail with that status. */
  function fakeApi(refuse?: number) {
    const calls: string[] = []
    const statuses: StatusRequest[] = []
    const fail = () => {
      if (refuse) throw Object.assign(new Error('Resource not accessible by integration'), { status: refuse })
    }
    const api: DeploymentsApi = {
      create: async p => {
        calls.push(`create ${p.ref} ${p.payload.safe_deploy.release}`)
        fail()
        return { id: 10 }
      },
      setStatus: async (id, s) => {
        calls.push(`status ${id} ${s.state}`)
        fail()
        statuses.push(s)
      },
      list: async () => {
        calls.push('list')
        fail()
        return [
          { id: 5, sha: env.GITHUB_SHA, payload: { safe_deploy: { release: '20261201T100000Z-a1b2c3d' } } },
          { id: 4, sha: 'f00dfee111', payload: { safe_deploy: { release: '20261130T100000Z-f00dfee' } } }
        ]
      }
    }
    return { api, calls, statuses }
  }

  test('a deploy: created once the release is known, in_progress, then failure with the verdict', async () => {
    const { api, calls, statuses } = fakeApi()
    const warned: string[] = []
    const sub = deploymentSubscriber(
      { environment: 'prod', environmentUrl: 'https://x' },
      () => api,
      m => void warned.push(m),
      env
    )
    await sub.on(started('deploy'))
    await sub.on({ type: 'release-chosen', release: 'r2' })
    const verdict = `DEPLOYMENT FAILED at verify on web-1: ${'x'.repeat(200)}`
    await sub.on({ type: 'run-finished', result: result({ status: 'rolled-back', exitCode: 4, verdict }) })
    expect(calls).toEqual([`create ${env.GITHUB_SHA} r2`, 'status 10 in_progress', 'status 10 failure'])
    expect(statuses[1]).toEqual({
      state: 'failure',
      description: statusDescription(verdict),
      log_url: 'https://github.com/octo/shop/actions/runs/99',
      environment_url: 'https://x'
    })
    expect(warned).toEqual([])
  })

  test('a rollback: its deployment for the commit of the release put back, the release it left inactive', async () => {
    const { api, calls } = fakeApi()
    const sub = silent(api)
    await sub.on(started('rollback'))
    await sub.on({ type: 'release-chosen', release: '20261130T100000Z-f00dfee' })
    await sub.on({
      type: 'run-finished',
      result: result({
        command: 'rollback',
        release: '20261130T100000Z-f00dfee',
        previousRelease: '20261201T100000Z-a1b2c3d'
      })
    })
    expect(calls).toEqual([
      'list',
      'create f00dfee111 20261130T100000Z-f00dfee',
      'status 10 in_progress',
      'status 10 success',
      'list',
      'status 5 inactive'
    ])
  })

  test('403: one warning naming the permission, then no more calls; a backup run records nothing', async () => {
    const { api, calls } = fakeApi(403)
    const warned: string[] = []
    const sub = deploymentSubscriber(
      { environment: 'prod' },
      () => api,
      m => void warned.push(m),
      env
    )
    await sub.on(started('deploy'))
    await sub.on({ type: 'release-chosen', release: 'r2' })
    await sub.on({ type: 'run-finished', result: result() })
    expect(calls).toEqual([`create ${env.GITHUB_SHA} r2`])
    expect(warned).toHaveLength(1)
    expect(warned[0]).toMatch(/HTTP 403.*permissions: deployments: write/)

    const other = fakeApi()
    const backup = silent(other.api)
    await backup.on(started('backup'))
    await backup.on({ type: 'run-finished', result: result({ command: 'backup' }) })
    expect(other.calls).toEqual([])
  })

  test('a deploy that failed before its release was known still gets a failed record', async () => {
    const { api, calls } = fakeApi()
    const sub = silent(api)
    await sub.on(started('deploy'))
    await sub.on({
      type: 'run-finished',
      result: result({ status: 'failed', exitCode: 3, release: undefined })
    })
    expect(calls).toEqual([
      `create ${env.GITHUB_SHA} undefined`,
      'status 10 in_progress',
      'status 10 failure'
    ])
  })
  test('an API that never answers: one warning after the timeout, the run goes on', async () => {
    const warned: string[] = []
    const hanging: DeploymentsApi = {
      create: () => new Promise(() => undefined),
      setStatus: async () => undefined,
      list: async () => []
    }
    const sub = deploymentSubscriber(
      { environment: 'prod' },
      () => hanging,
      m => void warned.push(m),
      env,
      50
    )
    await sub.on(started('deploy'))
    await sub.on({ type: 'release-chosen', release: 'r2' })
    await sub.on({ type: 'run-finished', result: result() })
    expect(warned).toEqual([
      'GitHub deployment for environment prod: creating the deployment failed (no answer in 0.05 s); the deploy goes on without it'
    ])
  })
  test('the post step closes a killed run’s deployment as failure; an API error is one warning', async () => {
    const { api, calls, statuses } = fakeApi()
    await closeDeployment(
      { environment: 'prod' },
      api,
      10,
      'the deploy was stopped during verify',
      () => undefined,
      env
    )
    expect(calls).toEqual(['status 10 failure'])
    expect(statuses[0]).toEqual({
      state: 'failure',
      description: 'the deploy was stopped during verify',
      log_url: 'https://github.com/octo/shop/actions/runs/99'
    })
    const warned: string[] = []
    await closeDeployment({ environment: 'prod' }, fakeApi(403).api, 10, 'x', m => void warned.push(m), env)
    expect(warned).toHaveLength(1)
    expect(warned[0]).toMatch(/it stays in_progress/)
  })
})

describe('per-host rows and annotations', () => {
  test('from the stages: the host a failed stage names failed there; the others share the run’s status', () => {
    const r = result({
      status: 'rolled-back',
      exitCode: 4,
      rolledBack: true,
      stages: [
        { name: 'switch', status: 'undone', duration_s: 1 },
        {
          name: 'verify',
          status: 'failed',
          duration_s: 1,
          host: 'web-2',
          error: 'health check GET /health: 500'
        }
      ],
      error: { stage: 'verify', host: 'web-2', message: 'health check GET /health: 500' }
    })
    expect(hostRows(r)).toEqual([
      {
        name: 'web-1',
        result: 'rolled-back',
        stage: undefined,
        before: r.previousRelease,
        after: r.previousRelease,
        error: undefined
      },
      {
        name: 'web-2',
        result: 'rolled-back',
        stage: 'verify',
        before: r.previousRelease,
        after: r.previousRelease,
        error: 'health check GET /health: 500'
      }
    ])
    expect(failedHosts(r).map(h => h.name)).toEqual(['web-2'])
    expect(failedHosts(result())).toEqual([])
  })

  test('hostResults, when the run has them, are the rows', () => {
    const hostResults = Array.from({ length: 12 }, (_, i) => ({
      name: `web-${i}`,
      roles: [],
      durationS: 1,
      result: i % 2 ? ('ok' as const) : ('unreachable' as const),
      error: i % 2 ? undefined : 'connect ECONNREFUSED'
    }))
    const r = result({ status: 'failed', exitCode: 3, hostResults })
    expect(hostRows(r)).toBe(hostResults)
    expect(failedHosts(r)).toHaveLength(6)
  })

  test('annotations: one per failed host, titled, at most 10; none for one failed host (the verdict is it)', () => {
    const hostResults = Array.from({ length: 13 }, (_, i) => ({
      name: `web-${i}`,
      roles: [],
      durationS: 1,
      stage: 'verify',
      result: 'failed' as const,
      error: `health check on web-${i}: HTTP 500`
    }))
    const r = result({ status: 'rolled-back', exitCode: 4, rolledBack: true, hostResults })
    const { annotations, more } = hostAnnotations(r)
    expect(annotations).toHaveLength(10)
    expect(more).toBe(3)
    expect(annotations[0]).toEqual({
      title: 'safe-deploy deploy: web-0 verify',
      message: 'health check on web-0: HTTP 500'
    })
    const one = result({ status: 'failed', exitCode: 3, hostResults: hostResults.slice(0, 1) })
    expect(hostAnnotations(one)).toEqual({ annotations: [], more: 0 })
  })
})
