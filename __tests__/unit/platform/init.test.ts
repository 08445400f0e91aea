/**
 * `init` and the example workflows: every preset's config loads as written, and every workflow passes each
 * variable its command reads for the config it runs (README "Configuration": env:NAME), no fewer.
 */
import { describe, expect, test } from '@jest/globals'
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { validateConfig, variablesFor, type LoadedConfig } from '../../../src/config/load.js'
import { PRESETS, initFiles, initProject, loadWithStandIns } from '../../../src/platform/init.js'
import { ConfigError } from '../../../src/core/exit.js'

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..', '..', '..')
const examplesDir = join(root, 'examples')

interface Step {
  uses?: string
  run?: string
  with?: Record<string, unknown>
  env?: Record<string, string>
}

/** Each safe-deploy step of a workflow: its command and the variables its env: passes. */
function safeDeploySteps(text: string): { command: string; env: string[]; before: Step[] }[] {
  const wf = parseYaml(text) as { jobs: Record<string, { steps: Step[] }> }
  return Object.values(wf.jobs).flatMap(job =>
    job.steps.flatMap((st, i) =>
      /safe-deploy@|^\.\/?$/.test(st.uses ?? '')
        ? [
            {
              command: String(st.with?.command ?? 'deploy'),
              env: Object.keys(st.env ?? {}),
              before: job.steps.slice(0, i)
            }
          ]
        : []
    )
  )
}

/** What the workflow's command reads for this config (a rollback may be asked to restore). */
const needed = (loaded: LoadedConfig, command: string) =>
  variablesFor(loaded, command, command === 'rollback' ? { restore: true } : {})

describe('init --preset', () => {
  test.each(Object.keys(PRESETS))(
    '%s: the config loads, and each workflow passes what its command reads',
    preset => {
      const dir = mkdtempSync(join(tmpdir(), 'init-'))
      const { files } = initFiles({ preset, dir, ci: 'github', force: false, examplesDir })
      const config = files.get('safe-deploy.yml') as string
      const loaded = loadWithStandIns(config, join(dir, 'safe-deploy.yml'))
      expect(config).toMatch(/^# Written by `safe-deploy init --preset /)
      expect(config).not.toContain('../workflows/')
      const workflows = [...files.keys()].filter(f => f.startsWith('.github/workflows/'))
      expect(workflows).toEqual(
        expect.arrayContaining(['.github/workflows/deploy.yml', '.github/workflows/rollback.yml'])
      )
      for (const wf of workflows) {
        const steps = safeDeploySteps(files.get(wf) as string)
        expect(steps).toHaveLength(1)
        for (const st of steps) expect(st.env.sort()).toEqual(needed(loaded, st.command).sort())
      }
      // the runner can run the config's test command: its toolchain is set up before the deploy step
      const deploy = safeDeploySteps(files.get('.github/workflows/deploy.yml') as string)[0]
      const test = loaded.config.stages.test ?? ''
      if (/python|pytest/.test(test))
        expect(deploy?.before.some(s => s.uses?.startsWith('actions/setup-python'))).toBe(true)
      if (/^npm /.test(test))
        expect(deploy?.before.some(s => s.uses?.startsWith('actions/setup-node'))).toBe(true)
    }
  )

  test('backups: a backup workflow that passes the database password, not the identity (a backup encrypts to recipients)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'init-'))
    const { files } = initFiles({ preset: 'docker-bots', dir, ci: 'github', force: false, examplesDir })
    const backup = safeDeploySteps(files.get('.github/workflows/backup.yml') as string)
    expect(backup[0]?.env).toEqual(['SSH_KEY', 'KNOWN_HOSTS', 'POSTGRES_PASSWORD'])
    // a rollback may restore: it can decrypt
    const rollback = safeDeploySteps(files.get('.github/workflows/rollback.yml') as string)
    expect(rollback[0]?.env).toEqual(expect.arrayContaining(['POSTGRES_PASSWORD', 'AGE_IDENTITY']))
  })

  test('gitlab: the tests run in a job with their toolchain; the deploy skips them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'init-'))
    const { files } = initFiles({ preset: 'systemd-python', dir, ci: 'gitlab', force: false, examplesDir })
    const ci = parseYaml(files.get('.gitlab-ci.yml') as string) as Record<string, unknown>
    expect(ci.test).toMatchObject({ stage: 'test', image: 'python:3.12' })
    expect(JSON.stringify(ci.include)).toContain('--skip-test')
    // and --skip-test takes the test command out of the deploy
    const raw = parseYaml(files.get('safe-deploy.yml') as string) as Record<string, unknown>
    const file = join(dir, 'safe-deploy.yml')
    const env = {
      SSH_KEY: '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n',
      KNOWN_HOSTS:
        'example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'
    }
    expect(validateConfig(structuredClone(raw), file, {}, env).config.stages.test).toBe(
      'python -m pytest tests/ -q'
    )
    expect(validateConfig(raw, file, { skipTest: true }, env).config.stages.test).toBeUndefined()
    // beside an existing .gitlab-ci.yml, ours is a file to include
    writeFileSync(join(dir, '.gitlab-ci.yml'), 'stages: [build]\n')
    const again = initFiles({ preset: 'systemd-python', dir, ci: 'gitlab', force: false, examplesDir })
    expect([...again.files.keys()]).toEqual(['safe-deploy.yml', 'safe-deploy.gitlab-ci.yml'])
  })

  test('writes nothing over an existing file without --force; an unknown preset is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'init-'))
    writeFileSync(join(dir, 'safe-deploy.yml'), 'mine\n')
    expect(() => initProject({ preset: 'node', dir, ci: 'github', force: false, examplesDir })).toThrow(
      /safe-deploy\.yml already exists .*nothing was written/
    )
    expect(readFileSync(join(dir, 'safe-deploy.yml'), 'utf8')).toBe('mine\n')
    expect(existsSync(join(dir, '.github'))).toBe(false)
    const r = initProject({ preset: 'node', dir, ci: 'github', force: true, examplesDir })
    expect(r.written).toContain('safe-deploy.yml')
    expect(readFileSync(join(dir, 'safe-deploy.yml'), 'utf8')).toContain('--preset node')
    expect(() => initProject({ preset: 'rails', dir, ci: 'none', force: true, examplesDir })).toThrow(
      ConfigError
    )
  })
})

describe('examples/workflows', () => {
  // each workflow says in its header which example config it runs
  const files = readdirSync(join(examplesDir, 'workflows')).filter(f => f.endsWith('.yml'))
  test.each(files)('%s passes every variable its command reads for the config it names', file => {
    const text = readFileSync(join(examplesDir, 'workflows', file), 'utf8')
    const m = /examples\/([\w-]+)\/safe-deploy\.yml/.exec(text.split('\n').slice(0, 4).join('\n'))
    expect(m).not.toBeNull()
    const configFile = join(examplesDir, m?.[1] as string, 'safe-deploy.yml')
    const loaded = loadWithStandIns(readFileSync(configFile, 'utf8'), configFile)
    const steps = safeDeploySteps(text)
    expect(steps.length).toBeGreaterThan(0)
    for (const st of steps) expect(st.env).toEqual(expect.arrayContaining(needed(loaded, st.command)))
    const test = loaded.config.stages.test ?? ''
    if (file === 'deploy.yml' && /python|pytest/.test(test))
      expect(steps[0]?.before.some(s => s.uses?.startsWith('actions/setup-python'))).toBe(true)
  })
})
