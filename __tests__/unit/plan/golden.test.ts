/**
 * `plan` is a dry run of the deploy's real stages (src/pipeline/plan.ts): for every example config, what it
 * prints is compared with a golden file under golden/. Set UPDATE_GOLDEN=1 to rewrite them after a change
 * that is meant to change what a deploy sends, and read the diff.
 */
import { describe, expect, test } from '@jest/globals'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { loadConfig } from '../../../src/config/load.js'
import { planDeploy } from '../../../src/pipeline/plan.js'
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

describe('plan golden files', () => {
  test.each(dirs)('examples/%s', async dir => {
    const loaded = loadConfig(join(examples, dir, 'safe-deploy.yml'), {}, env)
    const { text } = await planDeploy({
      loaded,
      reporter: quiet,
      actor: { who: 'plan-test', commit: '3f2a1c9d' },
      now: new Date('2026-11-21T19:30:00Z')
    })
    const got = stable(text) + '\n'
    expect(got).not.toContain(SECRET)
    expect(got).not.toContain('AGE-SECRET-KEY-1')
    const file = join(goldenDir, `${dir}.txt`)
    if (process.env.UPDATE_GOLDEN || !existsSync(file)) {
      mkdirSync(goldenDir, { recursive: true })
      writeFileSync(file, got)
    }
    expect(got).toBe(readFileSync(file, 'utf8'))
  })
})
