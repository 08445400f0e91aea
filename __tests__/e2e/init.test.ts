/**
 * From `init` to a deploy, as a newcomer does it: `safe-deploy init --preset node` in an empty project, the
 * edits its "next" steps ask for (the host, the path, the app's own restart and port), `plan`, then a real
 * deploy to an sshd host. The preset's own build (`npm ci --omit=dev && npm run build --if-present`) and test
 * (`npm test`) run as written.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { parse, stringify } from 'yaml'
import { fastShell, freePort, startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { writeApp } from './harness/app.js'
import { answer, cli, currentOf, stopApp } from './support.js'

let host: SshHost
let root: string

beforeAll(async () => {
  host = await startSshd({ extraConfig: fastShell() })
  root = join(tempDir('init-root-'), 'srv')
})

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
})

describe('init --preset node, then deploy', () => {
  test('the written config, edited as its next steps say, plans and deploys; the preset build ran', async () => {
    const dir = tempDir('init-project-')
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      SSH_KEY: host.privateKey,
      KNOWN_HOSTS: host.knownHostsLine
    }
    const init = await cli(['init', '--preset', 'node', '--dir', dir], env)
    expect(init.stderr).toBe('')
    expect(init.code).toBe(0)
    expect(init.stdout).toContain(
      'wrote safe-deploy.yml, .github/workflows/deploy.yml, .github/workflows/rollback.yml'
    )
    expect(init.stdout).toContain(
      'add repository secrets (or environment secrets of "production"): SSH_KEY, KNOWN_HOSTS'
    )
    expect(existsSync(join(dir, '.github', 'workflows', 'deploy.yml'))).toBe(true)

    // the app: the harness's node server, with a package.json and lockfile as an npm project has
    writeApp(dir, { version: '1.0.0' })
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({
        name: 'shop',
        version: '1.0.0',
        private: true,
        scripts: {
          test: 'node -e "process.exit(0)"',
          build: "node -e \"require('fs').writeFileSync('BUILT', 'yes')\""
        }
      })
    )
    writeFileSync(
      join(dir, 'package-lock.json'),
      JSON.stringify({
        name: 'shop',
        version: '1.0.0',
        lockfileVersion: 3,
        requires: true,
        packages: { '': { name: 'shop', version: '1.0.0' } }
      })
    )
    // what the person edits: the host, the path, and the app's restart and port (no systemd on this host)
    const port = await freePort()
    const file = join(dir, 'safe-deploy.yml')
    const c = parse(readFileSync(file, 'utf8')) as {
      hosts: unknown[]
      path: string
      env: Record<string, string>
      stages: Record<string, string>
      verify: { http: { url: string }; command: string; window: string }
    }
    c.hosts = [{ address: host.address, port: host.port, user: 'root' }]
    c.path = root
    c.stages.restart = 'bin/restart'
    c.env = { PORT: String(port), PID_FILE: `${root}/shared/app.pid` }
    c.verify.http.url = `http://127.0.0.1:${port}/health`
    c.verify.command = 'test -f BUILT'
    c.verify.window = '1s'
    writeFileSync(file, stringify(c))
    host.run(`mkdir -p ${root}/shared && echo 'SECRET=x' > ${root}/shared/.env`)

    const plan = await cli(['plan', '--config', file], env)
    expect(plan.code).toBe(0)
    expect(plan.stdout).toContain('npm ci --omit=dev && npm run build --if-present')

    const r = await cli(['deploy', '--config', file, '--json'], env)
    expect(r.stderr).toContain('DEPLOYMENT SUCCESS')
    expect(r.code).toBe(0)
    const release = (JSON.parse(r.stdout) as { release: string }).release
    expect(currentOf(root)).toBe(`releases/${release}`)
    expect(await answer(port)).toBe('version 1.0.0')
    // the preset's build ran in the release: npm ci, then the build script
    expect(readFileSync(join(root, 'releases', release, 'BUILT'), 'utf8')).toBe('yes')
  })
})
