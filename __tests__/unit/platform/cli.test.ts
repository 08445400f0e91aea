import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { runCli } from '../../../src/platform/cli.js'
import { REMOTE_SHELL } from '../../../src/commands/command.js'
import pkg from '../../../package.json' with { type: 'json' }
import { cleanup, tempDir } from '../helpers/shell.js'

interface Outcome {
  code: number
  stdout: string
  stderr: string
}

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<Outcome> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  stderr.setEncoding('utf8').on('data', (c: string) => (err += c))
  const code = await runCli(argv, { stdout, stderr, env })
  return { code, stdout: out, stderr: err }
}

const SECRET = 'sup3r-s3cret-t0ken-value'
const ID = /\d{8}T\d{6}Z-[0-9a-z]+/

describe('runCli without a server', () => {
  let dir: string
  let config: string
  let root: string

  beforeAll(() => {
    dir = tempDir('cli')
    root = join(dir, 'srv root')
    config = join(dir, 'safe-deploy.yml')
    writeFileSync(
      config,
      [
        'app: ledger',
        `path: ${root}`,
        'hosts:',
        '  - local: true',
        'env:',
        '  API_TOKEN: env:API_TOKEN',
        '  MODE: production',
        'shared:',
        '  files: [.env]',
        '  dirs: [data]',
        'stages:',
        '  build: npm ci --omit=dev',
        '  restart: bin/restart',
        'verify:',
        '  http:',
        '    url: http://127.0.0.1:18080/health',
        ''
      ].join('\n')
    )
  })
  afterAll(() => cleanup(dir))

  test('--help prints the usage on stdout and exits 0', async () => {
    const r = await cli(['--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^usage: safe-deploy <command> \[options\]\n/)
    for (const c of [
      'deploy',
      'rollback [--to R]',
      'releases',
      'status',
      'lock status',
      'lock release',
      'plan'
    ]) {
      expect(r.stdout).toContain(`\n  ${c} `)
    }
    expect(r.stderr).toBe('')
    expect((await cli(['-h'])).stdout).toBe(r.stdout)
  })

  test('--version prints the package version', async () => {
    expect(await cli(['--version'])).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: '' })
  })

  test('no command prints the usage and exits 2', async () => {
    const r = await cli([])
    expect(r.code).toBe(2)
    expect(r.stdout).toMatch(/^usage: safe-deploy/)
  })

  test('an unknown command exits 2 and says which', async () => {
    const r = await cli(['destroy'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^safe-deploy: unknown command "destroy"\n\nusage: safe-deploy/)
    expect(r.stdout).toBe('')
  })

  test('an unknown option exits 2 with the usage', async () => {
    const r = await cli(['deploy', '--bogus'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^safe-deploy: .*--bogus/)
    expect(r.stderr).toContain('usage: safe-deploy')
  })

  test.each(['abc', '0', '70000', '1.5'])('--port %s exits 2', async port => {
    const r = await cli(['plan', '-c', config, '--port', port])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(
      `safe-deploy: --port: expected a port number 1-65535, got ${JSON.stringify(port)}\n`
    )
    expect(r.stdout).toBe('')
  })

  test('--to that is not a release name exits 2 with the expected form', async () => {
    const r = await cli(['rollback', '-c', config, '--to', 'yesterday'])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(
      'safe-deploy: --to "yesterday" is not a release name; expected the form 20261121T193000Z-3f2a1c9 (see `safe-deploy releases`)\n'
    )
  })

  test.each([
    [['--environment-url', 'javascript:alert(1)'], {}, '--environment-url'],
    [['--environment-url', "https://x.example.com/'; id"], {}, '--environment-url'],
    [[], { SAFE_DEPLOY_ENVIRONMENT_URL: 'shop.example.com' }, 'SAFE_DEPLOY_ENVIRONMENT_URL']
  ])(
    'an environment URL that is not one line of http(s) exits 2 before anything runs (%j %j)',
    async (args, env, what) => {
      const dotenv = join(dir, 'refused.env')
      const r = await cli(['deploy', '-c', config, '--dotenv', dotenv, ...args], env)
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(new RegExp(`^safe-deploy: ${what}: expected an http:// or https:// URL, got `))
      expect(existsSync(dotenv)).toBe(false)
      expect(existsSync(root)).toBe(false)
    }
  )

  test('lock needs status or release', async () => {
    const r = await cli(['lock', 'steal', '-c', config])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe('safe-deploy: lock: expected `lock status` or `lock release`\n')
  })

  test('a missing config file exits 2 and names it', async () => {
    const missing = join(dir, 'nope.yml')
    const r = await cli(['deploy', '--config', missing])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(
      `safe-deploy: config file ${missing} not found; create one (see README "Configuration") or pass --config\n`
    )
  })

  test('an invalid config exits 2 and lists the problems', async () => {
    const bad = join(dir, 'bad.yml')
    writeFileSync(bad, 'app: ledger\npath: relative\nhosts: [{local: true}]\nkeep_releases: 1\n')
    const r = await cli(['plan', '-c', bad])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`safe-deploy: invalid config ${bad}:\n`)
    expect(r.stderr).toContain('  - path: expected an absolute path')
    expect(r.stderr).toContain('  - keep_releases: ')
  })

  test('plan prints the commands (the switch among them), runs nothing, and never shows a secret', async () => {
    const r = await cli(['plan', '-c', config], { API_TOKEN: SECRET })
    expect(r.code).toBe(0)
    const out = r.stdout
    const id = ID.exec(out)?.[0] as string
    expect(id).toBeDefined()
    expect(out).toMatch(new RegExp(`^# plan for ledger: release ${id} `))
    expect(out).toContain(`# every script below is sent over stdin to: ${REMOTE_SHELL}`)
    expect(out).toContain(`# switch current to ${id}\n`)
    expect(out).toContain(`ln -sfn releases/${id} '${root}/.current.${id}.tmp'\n`)
    expect(out).toContain(`mv -fT '${root}/.current.${id}.tmp' '${root}/current'\n`)
    expect(out).toContain('# take the deploy lock\n')
    expect(out).toContain(`ln -s "$shared/".env "$rel/".env`)
    expect(out).toContain(`\nnpm ci --omit=dev\n`)
    expect(out).toContain('# GET http://127.0.0.1:18080/health\n')
    // env values are placeholders, and the secret value appears nowhere
    expect(out).toContain(`export API_TOKEN='<API_TOKEN>'\n`)
    expect(out).not.toContain(SECRET)
    expect(r.stderr).not.toContain(SECRET)
    // nothing was created: plan runs nothing
    expect(existsSync(root)).toBe(false)
  })

  test('plan runs with an env: variable unset; deploy, which uses it, exits 2 naming it and itself', async () => {
    const plan = await cli(['plan', '-c', config], {})
    expect(plan.code).toBe(0)
    const r = await cli(['deploy', '-c', config], {})
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(
      'env.API_TOKEN: environment variable API_TOKEN is not set or empty (referenced as env:API_TOKEN): `deploy` needs it'
    )
  })

  test('--path overrides the deploy root in the plan', async () => {
    const r = await cli(['plan', '-c', config, '--path', '/opt/other'], { API_TOKEN: SECRET })
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('mv -fT /opt/other/.current.')
    expect(r.stdout).not.toContain(root)
  })
})
