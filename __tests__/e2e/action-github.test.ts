/**
 * The bundled Action (`node dist/index.js`, as the runner runs it: INPUT_* variables, GITHUB_OUTPUT /
 * GITHUB_STEP_SUMMARY files) against a real sshd, talking to GitHub through the real client libraries
 * (@actions/github's octokit, @actions/artifact with @azure/storage-blob). GitHub cannot be reached from here:
 * a local HTTP server stands in for the REST API, the results service and the blob storage
 * (harness/github-standin.ts) and records every request. These tests use dist/: `npm run bundle` first.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fastShell, startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { spawnAction } from './harness/cliproc.js'
import { pausePoint } from './harness/pause.js'
import { startGithubStandin, type GithubStandin } from './harness/github-standin.js'
import { actionStep, answer, currentOf, project, q, stopApp, type Project } from './support.js'

let host: SshHost
let other: SshHost
let gh: GithubStandin
const pidFiles: string[] = []
const repo = fileURLToPath(new URL('../..', import.meta.url))
const SHA1 = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678'
const SHA2 = 'f00dfeed00112233445566778899aabbccddeeff'

beforeAll(async () => {
  if (!existsSync(join(repo, 'dist', 'index.js')))
    throw new Error('dist/index.js is missing: run `npm run bundle` first')
  ;[host, other] = await Promise.all([
    startSshd({ extraConfig: fastShell() }),
    startSshd({ extraConfig: fastShell() })
  ])
  // one client key for both hosts, as in real life
  other.run(`cat ${q(`${host.privateKeyFile}.pub`)} >> ${q(join(other.dir, 'etc', 'authorized_keys'))}`)
  gh = await startGithubStandin()
})

beforeEach(() => {
  gh.requests.length = 0
  gh.deployments.length = 0
  gh.artifacts.clear()
  gh.refuseDeployments = undefined
  gh.refuseArtifacts = undefined
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  await gh?.close()
  await stopAll()
})

type Config = Record<string, unknown>

/** A project with a files backup copied to the runner and a migration that moves a revision from 1 to 2. */
async function setup(name: string): Promise<{ p: Project; root: string }> {
  const root = host.root(name)
  const p = await project({
    hosts: [host],
    root,
    config: base => ({
      ...base,
      ssh: { ...(base.ssh as Config), connect_retries: 1, connect_timeout: '3s' },
      verify: { http: { ...((base.verify as Config).http as Config), retries: 6, interval: '250ms' } },
      backup: { files: ['shared/data'], download: true },
      stages: {
        ...(base.stages as Config),
        migrate: { command: 'echo 2 > data/rev', revision: 'cat data/rev 2>/dev/null || echo 1' }
      }
    })
  })
  pidFiles.push(join(root, 'shared', 'app.pid'))
  host.run(`mkdir -p ${root}/shared/data && echo rows > ${root}/shared/data/rows`)
  return { p, root }
}

/** The Action's main step with the stand-in's environment; `inputs` as INPUT_<NAME> (as @actions/core reads them). */
async function runStep(
  p: Project,
  sha: string,
  inputs: Record<string, string> = {},
  env: NodeJS.ProcessEnv = {}
) {
  const step = actionStep(p, 'main', {
    ...gh.env(),
    GITHUB_SHA: sha,
    ...Object.fromEntries(Object.entries(inputs).map(([k, v]) => [`INPUT_${k.toUpperCase()}`, v])),
    ...env
  })
  const r = await spawnAction('index', step.env, p.dir).exited
  if (process.env.G1_DEBUG) console.log(r.stdout, r.stderr)
  return { r, out: step.outputs(), summary: step.summary(), env: step.env }
}

/** `::warning` annotations of the Action itself (a stage's log lines start with `[stage]`). */
const warnings = (stdout: string) =>
  stdout.split('\n').filter(l => l.startsWith('::warning') && !l.startsWith('::warning::['))

/** The files in a zip and their bytes, unpacked with unzip(1). */
function unzipped(bytes: Buffer): Map<string, Buffer> {
  const dir = tempDir('artifact-')
  writeFileSync(join(dir, 'a.zip'), bytes)
  execFileSync('unzip', ['-q', 'a.zip', '-d', 'out'], { cwd: dir })
  const files = new Map<string, Buffer>()
  for (const f of readdirSync(join(dir, 'out'))) files.set(f, readFileSync(join(dir, 'out', f)))
  return files
}

describe('the Action on GitHub (stand-in services)', () => {
  test('a deploy: a deployment in_progress → success, one artifact with the log, report and backup; outputs; summary', async () => {
    const { p, root } = await setup('gh-ok')
    p.app({ version: '1.0.0' })
    const { r, out, summary } = await runStep(p, SHA1, {
      environment: 'production',
      'environment-url': 'https://shop.example.com',
      'artifact-retention-days': '5'
    })
    expect(r.code).toBe(0)
    expect(await answer(p.port)).toBe('version 1.0.0')
    const release = out.release as string
    expect(currentOf(root)).toBe(`releases/${release}`)

    // the deployment: for the commit, with the release in its payload, then its statuses
    expect(gh.deployments).toHaveLength(1)
    const d = gh.deployments[0]!
    expect(d).toMatchObject({
      ref: SHA1,
      environment: 'production',
      auto_merge: false,
      required_contexts: [],
      transient_environment: false,
      production_environment: true,
      payload: { safe_deploy: { app: 'ledger', command: 'deploy', release } }
    })
    expect(d.statuses.map(s => s.state)).toEqual(['in_progress', 'success'])
    for (const s of d.statuses)
      expect(s).toMatchObject({
        log_url: 'https://github.com/octo/shop/actions/runs/4242',
        environment_url: 'https://shop.example.com'
      })
    expect(d.statuses[1]!.description).toMatch(/^DEPLOYMENT SUCCESS/)
    const rest = gh.requests.filter(q => q.path.startsWith('/repos/'))
    expect(rest.map(q => `${q.method} ${q.path}`)).toEqual([
      'POST /repos/octo/shop/deployments',
      `POST /repos/octo/shop/deployments/${d.id}/statuses`,
      `POST /repos/octo/shop/deployments/${d.id}/statuses`
    ])
    for (const q of rest) expect(q.authorization).toBe('token ghs_standintoken0000000000000000000')

    // the artifact: one per job attempt, its zip holds the run's log, report and the downloaded backup
    expect([...gh.artifacts.keys()]).toEqual(['safe-deploy-deploy-1'])
    const a = gh.artifacts.get('safe-deploy-deploy-1')!
    expect(a.create).toMatchObject({
      workflow_run_backend_id: 'run-backend-1',
      workflow_job_run_backend_id: 'job-backend-1'
    })
    expect(a.create.expires_at).toBeDefined()
    expect(a.finalize).toMatchObject({ name: 'safe-deploy-deploy-1', size: String(a.bytes.length) })
    const files = unzipped(a.bytes)
    const logFile = out['log-file'] as string
    const reportFile = out['report-file'] as string
    const backup = out['backup-name'] as string
    expect(backup).toBeTruthy()
    const backupFiles = readdirSync(join(logFile, '..')).filter(f => f.startsWith(`${backup}.`))
    expect(backupFiles.length).toBeGreaterThan(0)
    expect([...files.keys()].sort()).toEqual([basename(logFile), basename(reportFile), ...backupFiles].sort())
    for (const [f, bytes] of files) expect(bytes.equals(readFileSync(join(logFile, '..', f)))).toBe(true)
    // secrets never in the artifact: the SSH key and the token
    const all = Buffer.concat([...files.values()]).toString('latin1')
    const keyBody = (p.env.SSH_KEY as string).split('\n')[1] as string
    expect(all).not.toContain(keyBody)
    expect(all).not.toContain('ghs_standintoken')
    expect(JSON.parse(files.get(basename(reportFile))!.toString())).toMatchObject({
      release,
      revision: { before: '1', after: '2' }
    })

    expect(out).toMatchObject({
      status: 'success',
      'artifact-id': '777',
      'artifact-url': 'https://github.com/octo/shop/actions/runs/4242/artifacts/777'
    })
    expect(summary).toContain(`backup <code>${backup}</code>`)
    expect(summary).toContain('database revision <code>1</code> → <code>2</code>')
    expect(summary).toContain('<a href="https://github.com/octo/shop/actions/runs/4242/artifacts/777">')
    expect(summary).toMatch(new RegExp(`<td>${host.address}[^<]*</td><td>ok</td>`))
    expect(warnings(r.stdout)).toEqual([])
  })

  test('a failing deploy: the deployment ends failure with the verdict (140 characters at most); exit 4', async () => {
    const { p } = await setup('gh-fail')
    p.app({ version: '1.0.0' })
    expect((await runStep(p, SHA1, { environment: 'staging' })).r.code).toBe(0)
    p.app({ version: '2.0.0', crashAfterMs: 0 })
    const { r, out } = await runStep(p, SHA2, { environment: 'staging' })
    expect(r.code).toBe(4)
    expect(out.status).toBe('rolled-back')
    expect(await answer(p.port)).toBe('version 1.0.0')
    expect(gh.deployments).toHaveLength(2)
    const d = gh.deployments[1]!
    expect(d).toMatchObject({ ref: SHA2, environment: 'staging', production_environment: false })
    expect(d.statuses.map(s => s.state)).toEqual(['in_progress', 'failure'])
    const description = d.statuses[1]!.description as string
    expect(description).toMatch(/^DEPLOYMENT FAILED at verify/)
    expect(description.length).toBeLessThanOrEqual(140)
    // the artifact of the failed run is uploaded all the same
    expect(out['artifact-id']).toBe('777')
  })

  test('a token without deployments: write (403): one warning naming the permission; the deploy goes on, exit 0', async () => {
    const { p, root } = await setup('gh-403')
    gh.refuseDeployments = 403
    p.app({ version: '1.0.0' })
    const { r, out } = await runStep(p, SHA1, { environment: 'production' })
    expect(r.code).toBe(0)
    expect(currentOf(root)).toBe(`releases/${out.release}`)
    expect(await answer(p.port)).toBe('version 1.0.0')
    const w = warnings(r.stdout)
    expect(w).toHaveLength(1)
    expect(w[0]).toContain('HTTP 403')
    expect(w[0]).toContain('deployments: write')
    // one refused call, then no more
    expect(gh.requests.filter(q => q.path.startsWith('/repos/'))).toHaveLength(1)
    expect(out.status).toBe('success')
  })

  test('a rollback: a deployment of the release put back, and the release it left gets inactive', async () => {
    const { p } = await setup('gh-rollback')
    p.app({ version: '1.0.0' })
    const one = await runStep(p, SHA1, { environment: 'production' })
    expect(one.r.code).toBe(0)
    p.app({ version: '2.0.0' })
    const two = await runStep(p, SHA2, { environment: 'production' })
    expect(two.r.code).toBe(0)
    const { r, out } = await runStep(p, SHA2, { environment: 'production', command: 'rollback' })
    expect(r.code).toBe(0)
    expect(out.release).toBe(one.out.release)
    expect(await answer(p.port)).toBe('version 1.0.0')
    const [d1, d2, d3] = gh.deployments
    expect(gh.deployments).toHaveLength(3)
    // the rollback's deployment is for the commit of the release it put back
    expect(d3).toMatchObject({
      ref: SHA1,
      payload: { safe_deploy: { command: 'rollback', release: one.out.release, previous: two.out.release } }
    })
    expect(d3!.statuses.map(s => s.state)).toEqual(['in_progress', 'success'])
    expect(d2!.statuses.map(s => s.state)).toEqual(['in_progress', 'success', 'inactive'])
    expect(d1!.statuses.map(s => s.state)).toEqual(['in_progress', 'success'])
  })

  test('no artifact service (GHES, no ACTIONS_RUNTIME_TOKEN): one warning, the outputs keep the paths; github-deployment off', async () => {
    const { p } = await setup('gh-noservice')
    p.app({ version: '1.0.0' })
    const { r, out } = await runStep(p, SHA1, {}, { ACTIONS_RUNTIME_TOKEN: '' })
    expect(r.code).toBe(0)
    const w = warnings(r.stdout)
    expect(w).toHaveLength(1)
    expect(w[0]).toContain('artifact not uploaded')
    expect(w[0]).toContain('ACTIONS_RUNTIME_TOKEN')
    expect(out['artifact-id']).toBe('')
    expect(existsSync(out['log-file'] as string)).toBe(true)
    expect(existsSync(out['report-file'] as string)).toBe(true)
    // no environment input: no deployment, and nothing sent to the stand-in
    expect(gh.requests).toEqual([])
  })
  test('two hosts, verify fails on one: the verdict is the one annotation; the summary has a row per host', async () => {
    const roots = [host.root('gh-two'), other.root('gh-two')] as [string, string]
    const p = await project({
      hosts: [host, other],
      root: roots[0],
      config: c => ({
        ...c,
        hosts: [host, other].map((h, i) => ({
          address: h.address,
          port: h.port,
          user: 'root',
          path: roots[i]
        })),
        ssh: { ...(c.ssh as Config), connect_retries: 1, connect_timeout: '3s' },
        env: { PORT: (c.env as { PORT: string }).PORT },
        stages: {
          restart: 'HOST=$SAFE_DEPLOY_HOST_ADDRESS PID_FILE=$SAFE_DEPLOY_SHARED/app.pid bin/restart'
        },
        verify: {
          http: {
            url: `http://{host}:${(c.env as { PORT: string }).PORT}/health`,
            retries: 6,
            interval: '250ms'
          },
          // a release with FAIL_ON_OTHER fails its check on the second host only
          command: `test ! -e FAIL_ON_OTHER || test "$SAFE_DEPLOY_HOST_ADDRESS" != ${q(other.address)}`
        }
      })
    })
    for (const [i, h] of [host, other].entries()) {
      h.run(`mkdir -p ${q(`${roots[i]}/shared`)} && touch ${q(`${roots[i]}/shared/.env`)}`)
      pidFiles.push(join(roots[i] as string, 'shared', 'app.pid'))
    }
    p.app({ version: '1.0.0' })
    const one = await runStep(p, SHA1)
    expect(one.r.code).toBe(0)
    expect(one.summary).toMatch(new RegExp(`<td>${host.address}:2222</td><td>ok</td>`))
    expect(one.summary).toMatch(new RegExp(`<td>${other.address}:2222</td><td>ok</td>`))
    p.app({ version: '2.0.0' })
    writeFileSync(join(p.dir, 'app', 'FAIL_ON_OTHER'), '')
    const { r, out, summary } = await runStep(p, SHA2)
    expect(r.code).toBe(4)
    expect(out.status).toBe('rolled-back')
    for (const root of roots) expect(currentOf(root)).toBe(`releases/${one.out.release}`)
    const errors = r.stdout.split('\n').filter(l => l.startsWith('::error'))
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatch(new RegExp(`^::error::DEPLOYMENT FAILED at verify on ${other.address}:2222: `))
    // both were put back; the host that failed has its stage and its own error, the other none
    expect(summary).toMatch(
      new RegExp(
        `<td>${other.address}:2222</td><td>rolled-back</td><td>verify</td><td>[^<]*</td><td>verify command [^<]*failed on ${other.address}:2222`
      )
    )
    expect(summary).toMatch(
      new RegExp(`<td>${host.address}:2222</td><td>rolled-back</td><td>[^<]*</td><td>[^<]*</td><td>-</td>`)
    )
  })
  test('the results service refuses the artifact: one warning, the run’s exit code (4) unchanged', async () => {
    const { p } = await setup('gh-refused')
    p.app({ version: '1.0.0' })
    expect((await runStep(p, SHA1)).r.code).toBe(0)
    gh.refuseArtifacts = 400
    p.app({ version: '2.0.0', crashAfterMs: 0 })
    const { r, out } = await runStep(p, SHA2)
    expect(r.code).toBe(4)
    expect(out).toMatchObject({
      status: 'rolled-back',
      'exit-code': '4',
      'artifact-id': '',
      'artifact-url': ''
    })
    const w = warnings(r.stdout)
    expect(w).toHaveLength(1)
    expect(w[0]).toMatch(/^::warning::artifact safe-deploy-deploy-1 not uploaded \(.*400/)
    expect(existsSync(out['log-file'] as string)).toBe(true)
    expect(await answer(p.port)).toBe('version 1.0.0')
  })
  test('the main step killed after the switch: the post step puts the release back and closes the deployment as failure', async () => {
    const verify = pausePoint(tempDir('marks-'), 'verify')
    const { p, root } = await setup('gh-killed')
    p.app({ version: '1.0.0' })
    const one = await runStep(p, SHA1, { environment: 'production' })
    expect(one.r.code).toBe(0)
    // the next deploy pauses in verify (a verify command added to the config)
    const cfg = readFileSync(p.configFile, 'utf8').replace(
      /^verify:\n/m,
      `verify:\n  command: ${JSON.stringify(verify.shell)}\n`
    )
    writeFileSync(p.configFile, cfg)
    p.app({ version: '2.0.0' })
    verify.arm()
    const main = actionStep(p, 'main', { ...gh.env(), GITHUB_SHA: SHA2, INPUT_ENVIRONMENT: 'production' })
    const proc = spawnAction('index', main.env, p.dir)
    await verify.reached()
    proc.child.kill('SIGKILL')
    expect((await proc.exited).signal).toBe('SIGKILL')
    verify.release()
    const d = gh.deployments[1]!
    expect(d.statuses.map(s => s.state)).toEqual(['in_progress'])
    const state = Object.fromEntries(Object.entries(main.state()).map(([k, v]) => [`STATE_${k}`, v]))
    const post = actionStep(p, 'post', { ...gh.env(), GITHUB_SHA: SHA2, INPUT_ENVIRONMENT: 'production' })
    const r = await spawnAction('post', { ...post.env, ...state }, p.dir).exited
    expect(r.code).toBe(0)
    expect(currentOf(root)).toBe(`releases/${one.out.release}`)
    expect(d.statuses.map(s => s.state)).toEqual(['in_progress', 'failure'])
    expect(d.statuses[1]!.description).toMatch(/^the deploy was stopped during verify/)
    expect(d.statuses[1]!.log_url).toBe('https://github.com/octo/shop/actions/runs/4242')
  })
})
