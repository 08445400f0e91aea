/** Every documented example config must load as written: users copy them. */
import { describe, expect, test } from '@jest/globals'
import { readdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../../src/config/load.js'

const examples = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..', '..', 'examples')
const dirs = readdirSync(examples).filter(d => existsSync(join(examples, d, 'safe-deploy.yml')))

const env = {
  SSH_KEY: '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n',
  KNOWN_HOSTS: 'example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
  DATABASE_URL: 'postgres://bot:secret@127.0.0.1:5432/bot',
  DB_PASSWORD: 'secret',
  POSTGRES_PASSWORD: 'secret',
  AGE_IDENTITY: 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ',
  DEMO_PATH: '/tmp/demo',
  DEMO_SOURCE: '/tmp',
  DEMO_HEALTH_URL: 'http://127.0.0.1:18080/health'
}

describe('examples', () => {
  test('there are examples for the seed stacks', () => {
    expect(dirs).toEqual(
      expect.arrayContaining(['demo', 'python-bot-systemd', 'laravel-mysql', 'flask-compose', 'docker-bots'])
    )
  })
  test.each(dirs)('examples/%s/safe-deploy.yml loads as written', dir => {
    const loaded = loadConfig(join(examples, dir, 'safe-deploy.yml'), {}, env)
    expect(loaded.config.app).toMatch(/^[a-z_]+$/)
    expect(loaded.hosts.length).toBeGreaterThan(0)
  })
})
