/**
 * What the GitHub workflows and the GitLab component promise, read from the files users include:
 * the component pins the CLI release it was made with, checks the inputs that reach a shell, and does not
 * let a newer pipeline cancel a deploy; the release and self-test workflows do what README "Releasing" says.
 * (actionlint checks the workflows' syntax and expressions in .ci/run: scripts/actionlint.mjs.)
 */
import { describe, expect, test } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parse, parseAllDocuments } from 'yaml'
import { cleanup, tempDir } from './helpers/shell.js'

const repo = resolve(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..', '..')
const { version } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }
const templatesDir = join(repo, 'gitlab', 'templates')
const templates = readdirSync(templatesDir).filter(f => f.endsWith('.yml'))

interface Input {
  default?: string
  regex?: string
}
interface Job {
  script?: string[]
  interruptible?: boolean
  environment?: { name?: string; url?: string; action?: string }
  variables?: Record<string, string>
}

function template(file: string): { inputs: Record<string, Input>; jobs: Record<string, Job>; text: string } {
  const text = readFileSync(join(templatesDir, file), 'utf8')
  const [header, body] = parseAllDocuments(text).map(d => d.toJS() as Record<string, unknown>)
  const spec = (header?.spec ?? {}) as { inputs?: Record<string, Input> }
  return { inputs: spec.inputs ?? {}, jobs: (body ?? {}) as Record<string, Job>, text }
}

/** GitLab's `regex:` is RE2; these use only what RE2 and JavaScript read alike. */
const matches = (input: Input, value: string) => new RegExp(input.regex ?? '').test(value)

describe('GitLab component templates', () => {
  test('there are the deploy, rollback and backup templates', () => {
    expect(templates.sort()).toEqual(['backup.yml', 'deploy.yml', 'rollback.yml'])
  })

  test.each(templates)("%s: the version input defaults to package.json's version, exactly", file => {
    expect(template(file).inputs.version?.default).toBe(version)
  })

  test.each(templates)('%s: every input used in a script line has a regex that its default matches', file => {
    const { inputs, jobs } = template(file)
    const scripts = Object.values(jobs).flatMap(j => j.script ?? [])
    const used = new Set<string>(
      scripts.flatMap(l => [...l.matchAll(/\$\[\[ inputs\.(\w+) \]\]/g)].map(m => m[1] ?? ''))
    )
    // variables: blocks pass inputs into the script as environment values
    for (const j of Object.values(jobs))
      for (const v of Object.values(j.variables ?? {}))
        for (const m of String(v).matchAll(/\$\[\[ inputs\.(\w+) \]\]/g)) used.add(m[1] ?? '')
    // `cli` is a command by design (e.g. node vendor/safe-deploy/dist/cli.js): the job runs it
    used.delete('cli')
    expect(used.size).toBeGreaterThan(0)
    for (const name of used) {
      const input = inputs[name]
      expect({ name, regex: typeof input?.regex }).toEqual({ name, regex: 'string' })
      expect({ name, default: matches(input ?? {}, input?.default ?? '') }).toEqual({ name, default: true })
    }
  })

  test('the regexes let through what users write and refuse shell syntax', () => {
    const { inputs } = template('deploy.yml')
    const ok: Record<string, string[]> = {
      config: ['safe-deploy.yml', 'deploy/production.yml', 'ops/safe-deploy.staging.yml'],
      version: [version, '1.2.3', '2.0.0-rc.1'],
      args: ['', '--verbose', '--host web-2.example.org', '--host web-1,web-2 --verbose', '--port 2222'],
      environment_url: ['', 'https://shop.example.com', 'http://10.0.0.5:8080/health?x=1']
    }
    const bad: Record<string, string[]> = {
      config: ['a b.yml', 'x.yml"; id; "', '$(id).yml', '`id`', 'x.yml\nid'],
      version: ['latest', '1.2', '1.2.3; id', '^1.2.3', ''],
      args: ['--verbose; id', '$(id)', '`id`', '--host "a b"', "--host 'x'", 'a|b', 'a&b', 'a>b'],
      environment_url: ['javascript:alert(1)', "https://x/'; id", 'https://x/$(id)', 'https://a b', 'ftp://x']
    }
    for (const [name, values] of Object.entries(ok))
      for (const v of values)
        expect({ name, v, ok: matches(inputs[name] ?? {}, v) }).toEqual({ name, v, ok: true })
    for (const [name, values] of Object.entries(bad))
      for (const v of values)
        expect({ name, v, ok: matches(inputs[name] ?? {}, v) }).toEqual({ name, v, ok: false })
  })

  test.each([
    ['deploy.yml', 'safe-deploy-deploy'],
    ['rollback.yml', 'safe-deploy-rollback']
  ])('%s: not interruptible, environment URL from the dotenv report', (file, job) => {
    const j = template(file).jobs[job]
    expect(j?.interruptible).toBe(false)
    expect(j?.environment?.url).toBe('$DYNAMIC_ENVIRONMENT_URL')
    expect(j?.variables?.SAFE_DEPLOY_ENVIRONMENT_URL).toBe('$[[ inputs.environment_url ]]')
  })
})

describe('scripts/sync-gitlab-version.mjs', () => {
  test('--check fails on a template that pins another version; without it, the pin is rewritten', () => {
    const dir = tempDir('sync-version')
    try {
      mkdirSync(join(dir, 'gitlab'))
      cpSync(templatesDir, join(dir, 'gitlab', 'templates'), { recursive: true })
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'safe-deploy', version: '9.8.7' }))
      const run = (...args: string[]) =>
        spawnSync(process.execPath, [join(repo, 'scripts', 'sync-gitlab-version.mjs'), ...args], {
          cwd: dir,
          encoding: 'utf8'
        })
      const before = readFileSync(join(dir, 'gitlab', 'templates', 'deploy.yml'), 'utf8')
      const check = run('--check')
      expect(check.status).toBe(1)
      expect(check.stderr).toContain("is not '9.8.7'")
      expect(readFileSync(join(dir, 'gitlab', 'templates', 'deploy.yml'), 'utf8')).toBe(before)
      expect(run().status).toBe(0)
      for (const f of templates) {
        const text = readFileSync(join(dir, 'gitlab', 'templates', f), 'utf8')
        const header = parseAllDocuments(text)[0]?.toJS() as { spec: { inputs: Record<string, Input> } }
        expect(header.spec.inputs.version?.default).toBe('9.8.7')
        // only that line changed
        expect(text.replace(`'9.8.7'`, `'${version}'`)).toBe(readFileSync(join(templatesDir, f), 'utf8'))
      }
      expect(run('--check').status).toBe(0)
    } finally {
      cleanup(dir)
    }
  })
})

describe('GitHub workflows', () => {
  const workflow = (name: string) =>
    parse(readFileSync(join(repo, '.github', 'workflows', name), 'utf8')) as {
      on: Record<string, unknown>
      permissions?: Record<string, string>
      jobs: Record<
        string,
        {
          permissions?: Record<string, string>
          steps: {
            uses?: string
            run?: string
            with?: Record<string, string>
            'continue-on-error'?: boolean
          }[]
        }
      >
    }

  test('release.yml: on a version tag, checks dist/ and the pins, publishes with provenance, moves v<major>', () => {
    const w = workflow('release.yml')
    expect(w.on).toEqual({ push: { tags: ['v*.*.*'] } })
    const steps = Object.values(w.jobs).flatMap(j => j.steps)
    const runs = steps.map(s => s.run ?? '').join('\n')
    const npm = Object.values(w.jobs).find(j => /npm publish/.test(j.steps.map(s => s.run ?? '').join('\n')))
    expect(npm?.permissions).toMatchObject({ 'id-token': 'write', contents: 'write' })
    expect(runs).toContain('npm run bundle')
    expect(runs).toMatch(/git status --porcelain -- dist/)
    expect(runs).toContain('node scripts/sync-gitlab-version.mjs --check')
    expect(runs).toMatch(/npm publish --provenance --access public/)
    expect(runs).toMatch(/refs\/tags\/\$major/)
    // the GitLab component: gitlab/ pushed to its catalog project with the tag
    expect(runs).toMatch(/cp -R gitlab\/\. /)
  })

  test('self-test.yml: the Action itself (uses: ./), a failing deploy allowed to fail, a rollback', () => {
    const w = workflow('self-test.yml')
    const steps = Object.values(w.jobs).flatMap(j => j.steps)
    const action = steps.filter(s => s.uses === './')
    expect(action.length).toBeGreaterThanOrEqual(3)
    expect(action.some(s => s['continue-on-error'] === true)).toBe(true)
    expect(action.some(s => s.with?.command === 'rollback')).toBe(true)
    expect(steps.map(s => s.run ?? '').join('\n')).toContain('/usr/sbin/sshd -f')
  })
})
