/**
 * `plan` is a dry run of the deploy's real stages (src/flows/plan.ts): for every example config, what it
 * prints is compared with a golden file under golden/. Set UPDATE_GOLDEN=1 to rewrite them after a change
 * that is meant to change what a deploy sends, and read the diff.
 */
import { describe, expect, test } from '@jest/globals'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { loadConfig } from '../../../src/config/load.js'
import { planDeploy } from '../../../src/flows/plan.js'
import type { Reporter } from '../../../src/report/log.js'

const here = import.meta.dirname ?? new URL('.', import.meta.url).pathname
const repo = resolve(here, '..', '..', '..')
const examples = join(repo, 'examples')
const goldenDir = join(here, 'golden')
const dirs = readdirSync(examples).filter(d => existsSync(join(examples, d, 'safe-deploy.yml')))

/** Fake values for every env: reference of the examples; the secret ones must never show. */
const SECRET = 'fake-s3cret-for-plan'
const env = {
  SSH_KEY: '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n',
  KNOWN_HOSTS: 'example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
  DATABASE_URL: `postgres://bot:${SECRET}@127.0.0.1:5432/bot`,
  DB_PASSWORD: SECRET,
  POSTGRES_PASSWORD: SECRET,
  AGE_IDENTITY: 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ',
  DEMO_PATH: '/tmp/demo',
  DEMO_SOURCE: '/tmp',
  DEMO_HEALTH_URL: 'http://127.0.0.1:18080/health'
}
const quiet: Reporter = { info() {}, warn() {}, error() {}, startGroup() {}, endGroup() {} }

/** What differs between machines and runs: the checkout's path, the runner's name and pid, the lock token,
 * the backup's time (taken when the stage runs) and the package version. */
function stable(text: string): string {
  return text
    .split(repo)
    .join('<repo>')
    .split(hostname())
    .join('<runner>')
    .replace(/([a-z_]+)_\d{8}_\d{6}/g, '$1_<time>')
    .replace(/"created":"[0-9T:.Z-]+"/g, '"created":"<time>"')
    .replace(/"safe_deploy":"[^"]+"/g, '"safe_deploy":"<version>"')
    .replace(/"pid":\d+/g, '"pid":<pid>')
    .replace(/"token":"[0-9a-f]+"/g, '"token":"<token>"')
    .replace(/(token|TOKEN)=\\?'?[0-9a-f]{24}/g, '$1=<token>')
}

/**
 * Two hosts, blue-green, checks from the runner and from each host with `{host}` (one with a secret header), a
 * log scan and a window.
 */
const FLEET = `app: shop
path: /srv/shop
hosts:
  - { name: web-1, address: 10.0.0.1, user: deploy }
  - { name: web-2, address: 10.0.0.2, user: deploy }
ssh: { private_key: env:SSH_KEY, known_hosts: env:KNOWN_HOSTS }
source: { dir: . }
env: { API_TOKEN: env:DB_PASSWORD }
stages:
  build: make
  migrate: { command: bin/migrate up, revision: bin/migrate current, down: bin/migrate down }
switch:
  strategy: blue-green
  ports: [8001, 8002]
  start: bin/start
  stop: bin/stop
  health: 'http://127.0.0.1:{port}/health'
  upstream_file: /etc/nginx/shop-upstream.conf
  proxy_reload: sudo nginx -s reload
verify:
  http:
    - { url: 'http://{host}:8080/health', from: runner }
    - { url: 'http://{host}/ready', headers: { X-Token: env:DB_PASSWORD } }
  command: bin/smoke "$API_TOKEN"
  logs: { command: 'journalctl -u shop --since @{started}' }
  window: 5s
backup: false
`

async function golden(name: string, file: string) {
  const loaded = loadConfig(file, {}, env)
  // log_dir is relative to the working directory, which another test file in this jest worker may have
  // changed: plan from the repository, as a user runs it
  const cwd = process.cwd()
  process.chdir(repo)
  let text: string
  try {
    ;({ text } = await planDeploy({
      loaded,
      reporter: quiet,
      actor: { who: 'plan-test', commit: '3f2a1c9d' },
      now: new Date('2026-11-21T19:30:00Z')
    }))
  } finally {
    process.chdir(cwd)
  }
  // a config written to a temp dir for this test: its dir is the source dir
  const dir = dirname(file)
  const got = stable(dir.startsWith(repo) ? text : text.split(dir).join('<dir>')) + '\n'
  expect(got).not.toContain(SECRET)
  expect(got).not.toContain('AGE-SECRET-KEY-1')
  const path = join(goldenDir, `${name}.txt`)
  if (process.env.UPDATE_GOLDEN || !existsSync(path)) {
    mkdirSync(goldenDir, { recursive: true })
    writeFileSync(path, got)
  }
  expect(got).toBe(readFileSync(path, 'utf8'))
  return got
}

describe('plan golden files', () => {
  test('a blue-green fleet: each host by name, {host} replaced, gate, flip, verify, log scan, retire', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sd-plan-golden-'))
    writeFileSync(join(dir, 'safe-deploy.yml'), FLEET)
    const got = await golden('fleet-blue-green', join(dir, 'safe-deploy.yml'))
    const labels = got.split('\n').filter(l => /^#{1,2} /.test(l))
    for (const h of ['web-1', 'web-2']) {
      const at = labels.indexOf(`## switch on ${h}`)
      expect(labels.slice(at, at + 9)).toEqual([
        `## switch on ${h}`,
        '# read blue-green state',
        '# stop port 8001',
        '# start port 8001',
        '# GET http://127.0.0.1:8001/health',
        '# write upstream file /etc/nginx/shop-upstream.conf',
        '# proxy reload',
        '# switch current to 20261121T193000Z-3f2a1c9',
        '# record active port 8001'
      ])
    }
    expect(got).toContain('# GET http://10.0.0.1:8080/health\n$ (from the runner: expect HTTP 200)')
    expect(got).toContain('# GET http://10.0.0.2/ready\n')
    expect(got).not.toContain('{host}')
    expect(labels).toContain('# log scan')
    expect(labels).toContain('# after verify and 2 s of drain: stop port 8002')
    // env: values are placeholders; a secret used anywhere else shows as ***
    expect(got).toContain("export API_TOKEN='<API_TOKEN>'")
    expect(got).toMatch(/X-Token: \*\*\*/)
  })

  test('download: true shows the copy of the new backup to the runner, between the backup and the prune', async () => {
    const got = await golden('docker-bots', join(examples, 'docker-bots', 'safe-deploy.yml'))
    const labels = got.split('\n').filter(l => /^#{1,2} /.test(l))
    const backup = labels.slice(
      labels.indexOf('## backup on fs.example.org'),
      labels.indexOf('## deploy on runner')
    )
    const copy = backup.findIndex(l =>
      l.startsWith('# on the runner: copy backup field_service_<time> from fs.example.org')
    )
    expect(copy).toBeGreaterThan(
      backup.indexOf('# back up to /opt/field-service/backups/field_service_<time>')
    )
    expect(copy).toBeLessThan(backup.lastIndexOf('# list backups in /opt/field-service/backups'))
    expect(backup[copy]).toBe(
      '# on the runner: copy backup field_service_<time> from fs.example.org into <repo>/safe-deploy-logs, each file checked against field_service_<time>.sha256'
    )
  })

  test.each(dirs)('examples/%s', async dir => {
    await golden(dir, join(examples, dir, 'safe-deploy.yml'))
  })
})
