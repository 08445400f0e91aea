/**
 * `safe-deploy init --preset P`: a commented safe-deploy.yml for one of the seed stacks, and the CI files that
 * run it (GitHub workflows, or a GitLab include). The configs are the repository's own examples
 * (examples/<dir>/safe-deploy.yml, tested to load as written), so `init` and the docs cannot drift apart; the
 * workflows pass exactly the variables each command reads for that config (`variablesFor`).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { ConfigError } from '../core/exit.js'
import { isLazyKey, validateConfig, variablesFor, type LoadedConfig } from '../config/load.js'

/** What the CI runner needs before the config's `stages.test` can run there. */
type Toolchain = 'python' | 'php' | 'docker' | 'node'

interface Preset {
  /** examples/<example>/safe-deploy.yml */
  example: string
  toolchain: Toolchain
  summary: string
}

export const PRESETS: Record<string, Preset> = {
  'systemd-python': {
    example: 'python-bot-systemd',
    toolchain: 'python',
    summary: 'a Python app (e.g. a Telegram bot) under systemd, PostgreSQL + Alembic'
  },
  laravel: {
    example: 'laravel-mysql',
    toolchain: 'php',
    summary: 'Laravel + MySQL behind nginx + php-fpm'
  },
  compose: {
    example: 'flask-compose',
    toolchain: 'docker',
    summary: 'an app in docker compose with PostgreSQL (Flask)'
  },
  'docker-bots': {
    example: 'docker-bots',
    toolchain: 'python',
    summary: 'Telegram bots in Docker with encrypted daily/weekly/monthly database backups'
  },
  node: { example: 'node-systemd', toolchain: 'node', summary: 'a Node.js web app under systemd' }
}

export type CiKind = 'github' | 'gitlab' | 'none'

export interface InitOptions {
  preset: string
  /** The project directory the files are written into. */
  dir: string
  ci: CiKind
  /** Overwrite files that exist. */
  force: boolean
  /** The repository's examples/ dir (next to dist/ in the package). */
  examplesDir: string
  /** The JSON schema shipped with the CLI, for the editor hint at the top of the config. */
  schemaFile?: string
}

export interface InitResult {
  /** Paths written, relative to dir. */
  written: string[]
  /** Variables the CI must provide (secrets), by file that reads them. */
  variables: string[]
  /** What a person does next, one step per line. */
  next: string[]
}

const DUMMY_KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n'
const DUMMY_KNOWN_HOSTS =
  'example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'

/** Every `env:NAME` in a parsed config, with the key it is under. */
function envRefs(node: unknown, path: string, out: Map<string, string>): Map<string, string> {
  if (typeof node === 'string') {
    const m = /^env:([A-Za-z_][A-Za-z0-9_]*)$/.exec(node)
    if (m) out.set(m[1] as string, path)
  } else if (Array.isArray(node)) node.forEach((v, i) => envRefs(v, `${path}[${i}]`, out))
  else if (node && typeof node === 'object')
    for (const [k, v] of Object.entries(node)) envRefs(v, path ? `${path}.${k}` : k, out)
  return out
}

/** Loads a config text with a stand-in value for every variable it names: to learn what each command reads. */
export function loadWithStandIns(text: string, file: string): LoadedConfig {
  const raw = parseYaml(text) as Record<string, unknown>
  const env: Record<string, string> = {}
  // the values only some commands use stay unset: the config loads without them, as in a CI job
  for (const [name, key] of envRefs(raw, '', new Map())) {
    if (isLazyKey(key)) continue
    env[name] =
      key === 'ssh.private_key'
        ? DUMMY_KEY
        : key === 'ssh.known_hosts'
          ? DUMMY_KNOWN_HOSTS
          : `stand-in-value-for-${name}`
  }
  return validateConfig(raw, file, {}, env)
}

/** The steps a GitHub runner needs before `stages.test` (none when there is no test command). */
function githubSetup(toolchain: Toolchain): string[] {
  switch (toolchain) {
    case 'python':
      return [
        '      - uses: actions/setup-python@v5',
        '        with:',
        "          python-version: '3.12'",
        '      - run: python -m pip install -r requirements.txt pytest'
      ]
    case 'node':
      return [
        '      - uses: actions/setup-node@v4',
        '        with:',
        '          node-version: 22',
        '          cache: npm',
        '      - run: npm ci'
      ]
    case 'php':
      // ubuntu-latest has PHP and Composer
      return ['      - run: composer install --no-interaction --prefer-dist']
    case 'docker':
      return []
  }
}

/** The image and set-up of a GitLab job that runs `stages.test` (the component's image has Node only). */
function gitlabTestJob(toolchain: Toolchain, test: string): string[] {
  const image = { python: 'python:3.12', node: 'node:22', php: 'composer:2', docker: 'docker:27' }[toolchain]
  const setup = {
    python: ['pip install -r requirements.txt pytest'],
    node: ['npm ci'],
    php: ['composer install --no-interaction --prefer-dist'],
    docker: []
  }[toolchain]
  return [
    'test:',
    '  stage: test',
    `  image: ${image}`,
    ...(toolchain === 'docker' ? ['  services: [docker:27-dind]'] : []),
    '  script:',
    ...[...setup, test].map(line => `    - ${JSON.stringify(line)}`)
  ]
}

/** The one job of a workflow, up to its checkout: one concurrency group for every safe-deploy workflow. */
const jobHead = (job: string) => [
  'concurrency: deploy-production',
  'jobs:',
  `  ${job}:`,
  '    runs-on: ubuntu-latest',
  '    environment: production',
  '    steps:',
  '      - uses: actions/checkout@v5'
]

const secretEnv = (names: string[]) => [
  '        env:',
  ...names.map(n => `          ${n}: \${{ secrets.${n} }}`)
]

function deployWorkflow(preset: string, p: Preset, loaded: LoadedConfig): string {
  const test = loaded.config.stages.test
  return [
    `# .github/workflows/deploy.yml: deploy on every push to main (written by \`safe-deploy init --preset ${preset}\`).`,
    '# Repository secrets: the env: block below. Replace org/safe-deploy@v1 with the copy you use (README "Install").',
    'name: deploy',
    'on:',
    '  push:',
    '    branches: [main]',
    ...jobHead('deploy'),
    ...(test ? githubSetup(p.toolchain) : []),
    '      - id: deploy',
    '        uses: org/safe-deploy@v1',
    ...secretEnv(variablesFor(loaded, 'deploy')),
    ''
  ].join('\n')
}

function rollbackWorkflow(preset: string, loaded: LoadedConfig): string {
  return [
    `# .github/workflows/rollback.yml: a person picks a release (and, if the database must go back, a backup).`,
    `# Written by \`safe-deploy init --preset ${preset}\`.`,
    'name: rollback',
    'on:',
    '  workflow_dispatch:',
    '    inputs:',
    '      release:',
    '        description: Release to go back to (empty = the previous good one; see `npx safe-deploy releases`)',
    '        required: false',
    '      restore:',
    '        description: Backup to restore (loses writes made since it was taken; empty = down migration or none)',
    '        required: false',
    '      no-db:',
    '        description: Leave the database as it is',
    '        type: boolean',
    '        default: false',
    ...jobHead('rollback'),
    '      - uses: org/safe-deploy@v1',
    '        with:',
    '          command: rollback',
    '          to: ${{ inputs.release }}',
    '          restore: ${{ inputs.restore }}',
    '          no-db: ${{ inputs.no-db }}',
    // a person may pick `restore`: the job can decrypt
    ...secretEnv(variablesFor(loaded, 'rollback', { restore: true })),
    ''
  ].join('\n')
}

function backupWorkflow(preset: string, loaded: LoadedConfig): string {
  return [
    '# .github/workflows/backup.yml: a backup every night at 02:00 UTC, pruned by the retention policy.',
    `# Written by \`safe-deploy init --preset ${preset}\`.`,
    'name: backup',
    'on:',
    '  schedule:',
    "    - cron: '0 2 * * *'",
    '  workflow_dispatch:',
    ...jobHead('backup'),
    '      - uses: org/safe-deploy@v1',
    '        with:',
    '          command: backup',
    ...secretEnv(variablesFor(loaded, 'backup')),
    ''
  ].join('\n')
}

function gitlabCi(preset: string, p: Preset, loaded: LoadedConfig, variables: string[]): string {
  const test = loaded.config.stages.test
  const backups = !!loaded.config.backup && loaded.config.backup.enabled
  const component = (name: string, inputs: string[]) => [
    `  - component: $CI_SERVER_FQDN/your-group/safe-deploy/${name}@1`,
    ...(inputs.length ? ['    inputs:', ...inputs.map(i => `      ${i}`)] : [])
  ]
  return [
    `# GitLab CI for safe-deploy (written by \`safe-deploy init --preset ${preset}\`; see gitlab/README.md).`,
    `# CI/CD variables (protected; masked where GitLab can): ${variables.join(', ')}.`,
    ...(test
      ? ['# The tests run in their own job with the toolchain; the deploy job (Node only) skips them.']
      : []),
    'stages: [test, deploy]',
    '',
    'include:',
    ...component('deploy', ['environment: production', ...(test ? ["args: '--skip-test'"] : [])]),
    ...component('rollback', []),
    ...(backups ? component('backup', []) : []),
    '',
    ...(test ? gitlabTestJob(p.toolchain, test) : []),
    ''
  ].join('\n')
}

/** The files `init` writes for a preset: path (relative to the project dir) -> content. */
export function initFiles(opts: InitOptions): { files: Map<string, string>; variables: string[] } {
  const p = PRESETS[opts.preset]
  if (!p)
    throw new ConfigError(
      `init: unknown preset ${JSON.stringify(opts.preset)}; expected one of ${Object.keys(PRESETS).join(', ')}`
    )
  const example = join(opts.examplesDir, p.example, 'safe-deploy.yml')
  let text = readFileSync(example, 'utf8')
  const target = resolve(opts.dir, 'safe-deploy.yml')
  // the editor hint points at the schema shipped with this CLI, from where the config will be
  text = text.replace(/^# yaml-language-server: \$schema=.*$/m, () =>
    opts.schemaFile ? `# yaml-language-server: $schema=${relative(opts.dir, opts.schemaFile)}` : ''
  )
  // the examples point at the repository's example workflows; the user's are where init writes them
  text = text.replace(
    /see \.\.\/workflows\/(\w+\.yml)/g,
    opts.ci === 'github' ? 'see .github/workflows/$1' : 'see your CI file'
  )
  text = `# Written by \`safe-deploy init --preset ${opts.preset}\`: edit hosts, path and the commands, then run\n# \`safe-deploy plan\` to see every command a deploy would run.\n${text}`
  const loaded = loadWithStandIns(text, target)
  const files = new Map<string, string>([['safe-deploy.yml', text]])
  const backups = !!loaded.config.backup && loaded.config.backup.enabled
  const variables = [
    ...new Set([
      ...variablesFor(loaded, 'deploy'),
      ...variablesFor(loaded, 'rollback', { restore: true }),
      ...(backups ? variablesFor(loaded, 'backup') : [])
    ])
  ]
  if (opts.ci === 'github') {
    files.set('.github/workflows/deploy.yml', deployWorkflow(opts.preset, p, loaded))
    files.set('.github/workflows/rollback.yml', rollbackWorkflow(opts.preset, loaded))
    if (backups) files.set('.github/workflows/backup.yml', backupWorkflow(opts.preset, loaded))
  } else if (opts.ci === 'gitlab') {
    // an existing .gitlab-ci.yml is the user's: ours goes beside it, to include
    const name = existsSync(join(opts.dir, '.gitlab-ci.yml')) ? 'safe-deploy.gitlab-ci.yml' : '.gitlab-ci.yml'
    files.set(name, gitlabCi(opts.preset, p, loaded, variables))
  }
  return { files, variables }
}

/** Writes the preset's files; refuses (exit 2, nothing written) when one exists, unless `force`. */
export function initProject(opts: InitOptions): InitResult {
  const { files, variables } = initFiles(opts)
  const existing = [...files.keys()].filter(f => existsSync(join(opts.dir, f)))
  if (existing.length && !opts.force)
    throw new ConfigError(
      `init: ${existing.join(', ')} already exist${existing.length === 1 ? 's' : ''} in ${resolve(opts.dir)}; nothing was written (--force overwrites)`
    )
  for (const [f, content] of files) {
    const full = join(opts.dir, f)
    mkdirSync(dirname(full), { recursive: true })
    writeFileSync(full, content)
  }
  const next = [
    'edit safe-deploy.yml: hosts (address, user), path, and the commands for your app',
    `run \`safe-deploy plan\` to see every command a deploy would run (no server is contacted)`,
    opts.ci === 'github'
      ? `add repository secrets (or environment secrets of "production"): ${variables.join(', ')}`
      : opts.ci === 'gitlab'
        ? `add CI/CD variables: ${variables.join(', ')}${files.has('safe-deploy.gitlab-ci.yml') ? '; include safe-deploy.gitlab-ci.yml from your .gitlab-ci.yml (include: local:)' : ''}`
        : `export ${variables.join(', ')} in your shell, then \`safe-deploy deploy\``,
    'on each server: the deploy user, `ssh-keyscan <host>` into KNOWN_HOSTS, and the shared files (e.g. .env) in <path>/shared/'
  ]
  return { written: [...files.keys()], variables, next }
}

/** The repository's examples/ dir, found from this module's file (dist/cli.js or src/platform/init.ts). */
export function findExamplesDir(fromFile: string): string | undefined {
  let dir = dirname(fromFile)
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'examples', 'node-systemd', 'safe-deploy.yml'))) return join(dir, 'examples')
    dir = dirname(dir)
  }
  return undefined
}
