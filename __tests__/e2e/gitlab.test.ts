/**
 * The GitLab component, run for real: a consumer project includes gitlab/templates/*.yml the way a GitLab
 * project does (`include: local:` with `inputs:`), and gitlab-ci-local runs its pipelines on this machine
 * with the shell executor. The jobs deploy the demo app (examples/demo) with the local transport into a temp
 * deploy root: a deploy whose outputs reach a later job through the dotenv report, a broken deploy that rolls
 * back, the manual rollback job, and a scheduled pipeline that takes a backup.
 *
 * What gitlab-ci-local does not do like GitLab, and how the tests make up for it:
 * - the shell executor runs jobs in the project dir itself, so files from an earlier pipeline stay; each
 *   pipeline starts from a clean checkout here (`git clean`), as a GitLab job does;
 * - `CI_PIPELINE_SOURCE` is always `push`: a scheduled or web pipeline is `--variable CI_PIPELINE_SOURCE=...`;
 * - a manual job runs when named on the command line, with `--variable` for the variables a person would
 *   enter in the UI.
 * The jobs run the CLI from the current source (tsx), as `cli:` input, so that no npm download happens and the
 * test sees what src/ does now (dist/ is rebuilt separately).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawn, spawnSync } from 'node:child_process'
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  writeFileSync
} from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse, stringify } from 'yaml'
import { httpGet, stopApp } from './harness/app.js'
import { ensureDebianPackages } from './harness/packages.js'
import { freePort, tempDir } from './harness/sshd.js'

const repo = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..')
const gitlabCiLocal = join(repo, 'node_modules', '.bin', 'gitlab-ci-local')
/**
 * The jobs' `cli:` input: what `npx tsx src/cli.ts` runs, without npx looking for tsx in the consumer project.
 * E2E_GITLAB_CLI replaces it, e.g. with `node <repo>/dist/cli.js` to try the bundle.
 */
const cli =
  process.env.E2E_GITLAB_CLI ?? `${join(repo, 'node_modules', '.bin', 'tsx')} ${join(repo, 'src', 'cli.ts')}`
/** One gitlab-ci-local run: parsing, JSON schema validation (about 2 s), the jobs. */
const GCL_TIMEOUT_MS = 120_000

interface GclRun {
  code: number
  stdout: string
  /** stdout and stderr together, in order. */
  output: string
}

/**
 * Runs gitlab-ci-local in dir as CI does: CI=true, no TTY, no colours, and nothing from this process's own
 * CI environment (GitLab's or gitlab-ci-local's variables) leaking into the pipeline.
 */
function gcl(dir: string, home: string, args: string[]): Promise<GclRun> {
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !/^(GCL_|CI_|GITLAB_|GITHUB_|SAFE_DEPLOY_|DEMO_|JEST_|NODE_OPTIONS$)/.test(k)
    )
  )
  Object.assign(env, { CI: 'true', HOME: home, NO_COLOR: '1' })
  const child = spawn(
    gitlabCiLocal,
    // in dir itself: gitlab-ci-local's --cwd takes only a relative path
    ['--force-shell-executor', '--no-color', '--max-job-name-padding', '0', ...args],
    { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true }
  )
  let stdout = ''
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    stdout += c
    output += c
  })
  child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c))
  return new Promise((done, fail) => {
    const timer = setTimeout(() => {
      // the whole group: gitlab-ci-local, the job's shell and the CLI it runs
      if (child.pid) process.kill(-child.pid, 'SIGKILL')
      fail(new Error(`gitlab-ci-local ${args.join(' ')} ran over ${GCL_TIMEOUT_MS} ms:\n${output}`))
    }, GCL_TIMEOUT_MS)
    child.on('error', e => {
      clearTimeout(timer)
      fail(e)
    })
    child.on('close', code => {
      clearTimeout(timer)
      done({ code: code ?? 255, stdout, output })
    })
  })
}

function expectCode(r: GclRun, code: number): void {
  if (r.code !== code)
    throw new Error(`expected gitlab-ci-local to exit ${code}, got ${r.code}:\n${r.output}`)
}

function git(dir: string, ...args: string[]): string {
  const r = spawnSync('git', args, { cwd: dir, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${r.stdout}${r.stderr}`)
  return r.stdout.trim()
}

/** A new git repository in dir, with a committer (what gitlab-ci-local needs to run a pipeline there). */
function initRepo(dir: string): void {
  git(dir, 'init', '-q', '-b', 'main')
  git(dir, 'config', 'user.name', 'Dana Developer')
  git(dir, 'config', 'user.email', 'dana@example.com')
}

/** gitlab-ci-local's copy of a job's artifacts. */
function artifactsOf(dir: string, job: string): string {
  return join(dir, '.gitlab-ci-local', 'artifacts', job)
}

/** The job's `artifacts:reports:dotenv`, as GitLab passes it to later jobs. */
function dotenvOf(dir: string, job: string): Record<string, string> {
  const file = join(artifactsOf(dir, job), '.gitlab-ci-reports', 'dotenv', 'safe-deploy.env')
  return Object.fromEntries(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(l => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])
  )
}

/** The `[finish]` verdict of a safe-deploy log (the lock release is logged after it). */
function verdictOf(logFile: string): string {
  const verdicts = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter(l => /\[finish\] [A-Z]+ (SUCCESS|FAILED)/.test(l))
  return verdicts[verdicts.length - 1] ?? `(no verdict in ${logFile})`
}

interface ListedJob {
  name: string
  stage: string
  when: string
  allow_failure: boolean
}

/** The jobs of a pipeline as gitlab-ci-local would create it (`when: never` left out). */
async function jobsOf(dir: string, home: string, args: string[] = []): Promise<ListedJob[]> {
  const r = await gcl(dir, home, ['--list-json', ...args])
  expectCode(r, 0)
  return (JSON.parse(r.stdout) as ListedJob[]).filter(j => j.when !== 'never')
}

const pick = ({ name, stage, when, allow_failure }: ListedJob) => ({ name, stage, when, allow_failure })

/** gitlab-ci-local's pipelines are push pipelines; this makes one a scheduled or web pipeline. */
const pipelineSource = (source: string) => [
  '--variable',
  `CI_PIPELINE_SOURCE=${source}`,
  // it is predefined: without this, gitlab-ci-local warns that a variable overrides it
  '--ignore-predefined-vars',
  'CI_PIPELINE_SOURCE'
]

/**
 * The consumer's pipeline, as gitlab/README.md shows it, with the templates included from files; `inputs`
 * adds inputs to every template's (e.g. `environment_url: ...` for deploy and rollback).
 */
const consumerPipeline = (
  cliCommand: string,
  inputs: (template: string) => string = () => ''
): string => `stages: [test, deploy]

include:
${['deploy', 'rollback', 'backup']
  .map(
    t =>
      `  - local: ci/${t}.yml\n    inputs: { environment: demo, cli: '${cliCommand}'${inputs(t) ? `, ${inputs(t)}` : ''} }\n`
  )
  .join('')}
after-deploy:
  stage: .post
  needs: [safe-deploy-deploy]
  rules: !reference [safe-deploy-deploy, rules]
  script:
    - echo "deployed $SAFE_DEPLOY_RELEASE (backup $SAFE_DEPLOY_BACKUP_NAME), status $SAFE_DEPLOY_STATUS"
    - echo "$SAFE_DEPLOY_RELEASE" > after-deploy.txt
`

let work: string
let home: string
let dir: string
let root: string
let port: number

async function answer(): Promise<string> {
  const r = await httpGet(`http://127.0.0.1:${port}/`)
  return r.status === 200 ? r.body.trim() : `no answer (${r.status || r.error})`
}

const current = () => readlinkSync(join(root, 'current'))

/** A new version of the app, committed as a developer would push it; returns the commit. */
function commitVersion(version: string, broken: boolean): string {
  cleanCheckout()
  writeFileSync(join(dir, 'app', 'VERSION'), `${version}\n`)
  if (broken) writeFileSync(join(dir, 'app', 'BROKEN'), 'answers 500 on /health\n')
  else if (existsSync(join(dir, 'app', 'BROKEN'))) git(dir, 'rm', '-q', 'app/BROKEN')
  git(dir, 'add', '-A')
  git(dir, 'commit', '-q', '--allow-empty', '-m', `version ${version}`)
  return git(dir, 'rev-parse', 'HEAD')
}

/** What a GitLab job starts from: the commit, and nothing left by earlier pipelines but gitlab-ci-local's. */
function cleanCheckout(): void {
  git(dir, 'clean', '-q', '-fdx', '-e', '.gitlab-ci-local/', '-e', '.gitlab-ci-local-variables.yml')
}

beforeAll(async () => {
  ensureDebianPackages([
    { binary: '/usr/bin/git', pkg: 'git' },
    // gitlab-ci-local copies artifacts with rsync
    { binary: '/usr/bin/rsync', pkg: 'rsync' }
  ])
  // the templates run `$CLI deploy ...`: the command is split on spaces, as a user's `cli:` input is
  if (/\s/.test(repo)) throw new Error(`the repository path must not contain spaces: ${repo}`)
  work = tempDir('safe-deploy-gitlab-')
  home = join(work, 'home')
  dir = join(work, 'shop')
  root = join(work, 'server', 'demo')
  port = await freePort()
  mkdirSync(home)

  // What a person does once on the server: the shared config the app reads, and data worth backing up.
  mkdirSync(join(root, 'shared', 'data'), { recursive: true })
  writeFileSync(join(root, 'shared', '.env'), `PORT=${port}\n`, { mode: 0o600 })
  writeFileSync(join(root, 'shared', 'data', 'orders.csv'), 'id,total\n1,9.99\n')

  // The consumer project: the demo app, its safe-deploy.yml, the component's templates and .gitlab-ci.yml.
  cpSync(join(repo, 'examples', 'demo', 'app'), join(dir, 'app'), { recursive: true })
  cpSync(join(repo, 'gitlab', 'templates'), join(dir, 'ci'), { recursive: true })
  const config = parse(readFileSync(join(repo, 'examples', 'demo', 'safe-deploy.yml'), 'utf8')) as Record<
    string,
    unknown
  >
  Object.assign(config, {
    shared: { files: ['.env'], dirs: ['logs', 'data'] },
    keep_releases: 5,
    backup: { files: ['shared/data'], download: true }
  })
  writeFileSync(join(dir, 'safe-deploy.yml'), stringify(config))
  writeFileSync(join(dir, '.gitlab-ci.yml'), consumerPipeline(cli))
  // CI/CD variables of the project (Settings > CI/CD > Variables), of type Variable: gitlab-ci-local makes a
  // plain value that names an existing path a File variable
  const variables = {
    DEMO_PATH: root,
    DEMO_SOURCE: join(dir, 'app'),
    DEMO_HEALTH_URL: `http://127.0.0.1:${port}/health`
  }
  writeFileSync(
    join(dir, '.gitlab-ci-local-variables.yml'),
    stringify(
      Object.fromEntries(
        Object.entries(variables).map(([k, v]) => [k, { type: 'variable', values: { '*': v } }])
      )
    )
  )
  writeFileSync(join(dir, '.gitignore'), '.gitlab-ci-local/\n.gitlab-ci-local-variables.yml\n')
  git(dir, 'init', '-q', '-b', 'main')
  git(dir, 'config', 'user.name', 'Dana Developer')
  git(dir, 'config', 'user.email', 'dana@example.com')
  git(dir, 'remote', 'add', 'origin', 'https://gitlab.example.com/acme/shop.git')
  git(dir, 'add', '-A')
  git(dir, 'commit', '-q', '-m', 'the shop')
  // as after a clone: origin/HEAD names the default branch (CI_DEFAULT_BRANCH)
  git(dir, 'update-ref', 'refs/remotes/origin/main', 'HEAD')
  git(dir, 'symbolic-ref', 'refs/remotes/origin/HEAD', 'refs/remotes/origin/main')
}, 600_000)

afterAll(async () => {
  if (root) await stopApp(join(root, 'shared', 'app.pid'))
})

describe('GitLab component (gitlab/templates) run by gitlab-ci-local', () => {
  let r1: string
  let r3: string

  test('a push pipeline deploys v1; a later job gets SAFE_DEPLOY_* from the dotenv report', async () => {
    const commit = commitVersion('1.0.0', false)
    const r = await gcl(dir, home, [])
    expectCode(r, 0)
    expect(r.output).toMatch(/PASS\s+safe-deploy-deploy/)
    expect(r.output).toMatch(/PASS\s+after-deploy/)
    // manual, and only in scheduled or web pipelines
    expect(r.output).not.toContain('safe-deploy-rollback starting')
    expect(r.output).not.toContain('safe-deploy-backup starting')

    const out = dotenvOf(dir, 'safe-deploy-deploy')
    r1 = out.SAFE_DEPLOY_RELEASE ?? ''
    expect(r1).toMatch(new RegExp(`^\\d{8}T\\d{6}Z-${commit.slice(0, 7)}$`))
    expect(out).toMatchObject({
      SAFE_DEPLOY_STATUS: 'success',
      SAFE_DEPLOY_PREVIOUS_RELEASE: '',
      SAFE_DEPLOY_ROLLED_BACK: 'false',
      SAFE_DEPLOY_EXIT_CODE: '0'
    })
    expect(out.SAFE_DEPLOY_BACKUP_NAME).toMatch(/^demo_\d{8}_\d{6}$/)
    expect(current()).toBe(`releases/${r1}`)
    expect(await answer()).toBe('demo app version 1.0.0')

    // the log is a job artifact
    const logs = join(artifactsOf(dir, 'safe-deploy-deploy'), 'safe-deploy-logs')
    const log = join(logs, basename(out.SAFE_DEPLOY_LOG_FILE ?? '?'))
    expect(basename(log)).toMatch(/^deploy_\d{8}_\d{6}\.log$/)
    expect(verdictOf(log)).toMatch(/DEPLOYMENT SUCCESS/)
    expect(readdirSync(logs)).toContain(basename(out.SAFE_DEPLOY_REPORT_FILE ?? '?'))

    // the consumer's own job, after the deploy
    expect(readFileSync(join(dir, 'after-deploy.txt'), 'utf8').trim()).toBe(r1)
    expect(r.output).toContain(`deployed ${r1} (backup ${out.SAFE_DEPLOY_BACKUP_NAME}), status success`)

    // the server's history says which GitLab job and commit deployed
    const history = readFileSync(join(root, '.safe-deploy', 'history.jsonl'), 'utf8')
      .trim()
      .split('\n')
    expect(JSON.parse(history[history.length - 1] ?? '{}')).toMatchObject({
      type: 'deploy',
      release: r1,
      status: 'success',
      commit,
      run: expect.stringMatching(/^https:\/\/gitlab\.example\.com\/acme\/shop\/-\/jobs\/\d+$/)
    })
  }, 180_000)

  test('a broken v2 fails the job, rolls back, and says so in the dotenv report and the artifacts', async () => {
    commitVersion('2.0.0', true)
    const r = await gcl(dir, home, [])
    expectCode(r, 1)
    expect(r.output).toMatch(/FAIL\s+safe-deploy-deploy/)
    // it needs the deploy: it does not run
    expect(r.output).not.toContain('after-deploy starting')
    expect(existsSync(join(dir, 'after-deploy.txt'))).toBe(false)

    const out = dotenvOf(dir, 'safe-deploy-deploy')
    expect(out).toMatchObject({
      SAFE_DEPLOY_STATUS: 'rolled-back',
      SAFE_DEPLOY_PREVIOUS_RELEASE: r1,
      SAFE_DEPLOY_ROLLED_BACK: 'true',
      SAFE_DEPLOY_EXIT_CODE: '4'
    })
    expect(out.SAFE_DEPLOY_RELEASE).not.toBe(r1)
    expect(current()).toBe(`releases/${r1}`)
    expect(await answer()).toBe('demo app version 1.0.0')
    // artifacts: when: always
    const log = join(
      artifactsOf(dir, 'safe-deploy-deploy'),
      'safe-deploy-logs',
      basename(out.SAFE_DEPLOY_LOG_FILE ?? '?')
    )
    expect(verdictOf(log)).toMatch(/DEPLOYMENT FAILED at verify .*HTTP 500.*ROLLED BACK/)
  }, 180_000)

  test('the manual rollback job, run with ROLLBACK_TO, goes back to v1 from a healthy v3', async () => {
    commitVersion('3.0.0', false)
    const deployed = await gcl(dir, home, ['safe-deploy-deploy'])
    expectCode(deployed, 0)
    r3 = dotenvOf(dir, 'safe-deploy-deploy').SAFE_DEPLOY_RELEASE ?? ''
    expect(current()).toBe(`releases/${r3}`)
    expect(await answer()).toBe('demo app version 3.0.0')

    cleanCheckout()
    const r = await gcl(dir, home, ['safe-deploy-rollback', '--variable', `ROLLBACK_TO=${r1}`])
    expectCode(r, 0)
    // allow_failure: a failed rollback would be a WARN and still exit 0
    expect(r.output).toMatch(/PASS\s+safe-deploy-rollback/)
    expect(dotenvOf(dir, 'safe-deploy-rollback')).toMatchObject({
      SAFE_DEPLOY_STATUS: 'success',
      SAFE_DEPLOY_RELEASE: r1,
      SAFE_DEPLOY_PREVIOUS_RELEASE: r3,
      SAFE_DEPLOY_EXIT_CODE: '0'
    })
    expect(current()).toBe(`releases/${r1}`)
    expect(await answer()).toBe('demo app version 1.0.0')
    const logs = join(artifactsOf(dir, 'safe-deploy-rollback'), 'safe-deploy-logs')
    const log = readdirSync(logs).find(f => /^rollback_.*\.log$/.test(f))
    expect(verdictOf(join(logs, log ?? '?'))).toMatch(/ROLLBACK SUCCESS/)
  }, 240_000)

  test('the backup job is only in scheduled and web pipelines; a scheduled pipeline takes a backup', async () => {
    const jobs = async (source: string) => (await jobsOf(dir, home, pipelineSource(source))).map(pick)
    const deployJob = {
      name: 'safe-deploy-deploy',
      stage: 'deploy',
      when: 'on_success',
      allow_failure: false
    }
    const rollbackJob = { name: 'safe-deploy-rollback', stage: 'deploy', when: 'manual', allow_failure: true }
    const afterJob = { name: 'after-deploy', stage: '.post', when: 'on_success', allow_failure: false }
    expect(await jobs('push')).toEqual([deployJob, rollbackJob, afterJob])
    // a scheduled pipeline backs up and does not deploy
    expect(await jobs('schedule')).toEqual([
      rollbackJob,
      { name: 'safe-deploy-backup', stage: 'deploy', when: 'on_success', allow_failure: false }
    ])
    // unmerged code is not deployed
    expect((await jobs('merge_request_event')).map(j => j.name)).not.toContain('safe-deploy-deploy')
    // Run pipeline: the backup is offered, and does not block the pipeline
    expect(await jobs('web')).toEqual([
      deployJob,
      rollbackJob,
      { name: 'safe-deploy-backup', stage: 'deploy', when: 'manual', allow_failure: true },
      afterJob
    ])
    // GitLab refuses a pipeline whose jobs need a job that is not in it
    const chain = await gcl(dir, home, ['--validate-dependency-chain', ...pipelineSource('schedule')])
    expectCode(chain, 0)

    cleanCheckout()
    const before = current()
    const r = await gcl(dir, home, pipelineSource('schedule'))
    expectCode(r, 0)
    expect(r.output).toMatch(/PASS\s+safe-deploy-backup/)
    expect(r.output).not.toContain('safe-deploy-deploy starting')
    expect(current()).toBe(before)
    const logs = join(artifactsOf(dir, 'safe-deploy-backup'), 'safe-deploy-logs')
    const files = readdirSync(logs)
    const log = files.find(f => /^backup_.*\.log$/.test(f))
    expect(verdictOf(join(logs, log ?? '?'))).toMatch(/BACKUP SUCCESS/)
    // backup.download: the job keeps a copy, and it holds the shared data
    const archive = files.find(f => /^demo_\d{8}_\d{6}\.files\.tar\.gz$/.test(f))
    expect(archive).toBeDefined()
    expect(existsSync(join(root, 'backups', archive ?? '?'))).toBe(true)
    const listing = spawnSync('tar', ['-tzf', join(logs, archive ?? '?')], { encoding: 'utf8' }).stdout
    expect(listing).toMatch(/shared\/data\/orders\.csv/)
  }, 240_000)

  test("the component project's own pipeline: self-test on pushes, release on v* tags", async () => {
    const component = join(work, 'safe-deploy-component')
    cpSync(join(repo, 'gitlab'), component, { recursive: true })
    git(component, 'init', '-q', '-b', 'main')
    git(component, 'config', 'user.name', 'Maintainer')
    git(component, 'config', 'user.email', 'maintainer@example.com')
    git(component, 'remote', 'add', 'origin', 'https://gitlab.example.com/tools/safe-deploy.git')
    git(component, 'add', '-A')
    git(component, 'commit', '-q', '-m', 'component')
    const names = async (args: string[]) => (await jobsOf(component, home, args)).map(j => j.name)
    expect(await names([])).toEqual(['safe-deploy-deploy', 'self-test-cli'])
    expect(await names(['--variable', 'CI_COMMIT_TAG=v1.2.0'])).toEqual([
      'safe-deploy-deploy',
      'self-test-cli',
      'release'
    ])
    // the self-test deploy job, with this checkout's CLI instead of the published one
    const r = await gcl(component, home, ['safe-deploy-deploy', '--variable', `SAFE_DEPLOY_CLI=${cli}`])
    expectCode(r, 0)
    expect(r.output).toContain('usage: safe-deploy <command> [options]')
  }, 180_000)

  test('environment_url: DYNAMIC_ENVIRONMENT_URL in the dotenv; after a rollback it names the release put back', async () => {
    cleanCheckout()
    const url = 'https://shop.example.com/'
    writeFileSync(
      join(dir, '.gitlab-ci.yml'),
      consumerPipeline(cli, t => (t === 'backup' ? '' : `environment_url: '${url}'`))
    )
    git(dir, 'add', '.gitlab-ci.yml')
    const commit = commitVersion('4.0.0', false)
    expect(git(dir, 'show', '--name-only', '--format=', commit)).toContain('.gitlab-ci.yml')
    const deployed = await gcl(dir, home, ['safe-deploy-deploy'])
    expectCode(deployed, 0)
    const out = dotenvOf(dir, 'safe-deploy-deploy')
    expect(out.DYNAMIC_ENVIRONMENT_URL).toBe(url)
    const r4 = out.SAFE_DEPLOY_RELEASE ?? ''
    expect(current()).toBe(`releases/${r4}`)

    cleanCheckout()
    const r = await gcl(dir, home, ['safe-deploy-rollback', '--variable', `ROLLBACK_TO=${r1}`])
    expectCode(r, 0)
    expect(dotenvOf(dir, 'safe-deploy-rollback')).toMatchObject({
      SAFE_DEPLOY_STATUS: 'success',
      SAFE_DEPLOY_RELEASE: r1,
      SAFE_DEPLOY_PREVIOUS_RELEASE: r4,
      DYNAMIC_ENVIRONMENT_URL: `${url}#release=${r1}`
    })
    expect(current()).toBe(`releases/${r1}`)
    expect(await answer()).toBe('demo app version 1.0.0')
  }, 240_000)

  test('inputs that reach the job shell must match their regex: shell syntax is refused, nothing runs', async () => {
    const bad = join(work, 'bad-inputs')
    cpSync(join(repo, 'gitlab', 'templates'), join(bad, 'ci'), { recursive: true })
    const marker = join(work, 'injected')
    const cases: Record<string, string> = {
      config: `safe-deploy.yml"; touch ${marker}; "`,
      version: `1.0.0; touch ${marker}`,
      args: `--verbose $(touch ${marker})`,
      environment_url: `https://x.example.com/'; touch ${marker}`
    }
    for (const [input, value] of Object.entries(cases)) {
      writeFileSync(
        join(bad, '.gitlab-ci.yml'),
        `include:\n  - local: ci/deploy.yml\n    inputs:\n      ${input}: ${JSON.stringify(value)}\n`
      )
      if (!existsSync(join(bad, '.git'))) initRepo(bad)
      git(bad, 'add', '-A')
      git(bad, 'commit', '-q', '--allow-empty', '-m', input)
      const r = await gcl(bad, home, ['safe-deploy-deploy', '--variable', `SAFE_DEPLOY_CLI=${cli}`])
      expect({ input, code: r.code }).toEqual({ input, code: 1 })
      expect(r.output).toMatch(new RegExp(`${input}.*(regex|match)`, 'i'))
      expect(existsSync(marker)).toBe(false)
    }
  }, 240_000)

  test("without a cli input, the jobs run the exact npm release the component pins (package.json's version)", async () => {
    const pinned = join(work, 'pinned')
    cpSync(join(repo, 'gitlab', 'templates'), join(pinned, 'ci'), { recursive: true })
    writeFileSync(
      join(pinned, '.gitlab-ci.yml'),
      `include:\n${['deploy', 'rollback', 'backup'].map(t => `  - local: ci/${t}.yml\n`).join('')}`
    )
    initRepo(pinned)
    git(pinned, 'add', '-A')
    git(pinned, 'commit', '-q', '-m', 'pinned')
    const r = await gcl(pinned, home, ['--preview'])
    expectCode(r, 0)
    const { version } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }
    const jobs = parse(r.stdout) as Record<string, { script?: string[]; interruptible?: boolean }>
    for (const job of ['safe-deploy-deploy', 'safe-deploy-rollback', 'safe-deploy-backup']) {
      expect(jobs[job]?.script?.[0]).toBe(`CLI="\${SAFE_DEPLOY_CLI:-npx --yes safe-deploy@${version}}"`)
    }
    // a newer pipeline does not cancel a deploy or a rollback half-way
    expect(jobs['safe-deploy-deploy']?.interruptible).toBe(false)
    expect(jobs['safe-deploy-rollback']?.interruptible).toBe(false)
  }, 120_000)
})
