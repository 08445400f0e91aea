import { describe, expect, test } from '@jest/globals'
import { configSchema, hostSchema } from '../../../src/config/schema.js'

describe('configSchema', () => {
  test('a minimal config gets every default', () => {
    const c = configSchema.parse({ app: 'ledger', path: '/srv/ledger', hosts: [{ address: 'web-1' }] })
    expect(c.hosts).toHaveLength(1)
    expect(c.hosts[0]).toMatchObject({ address: 'web-1', port: 22, user: 'root' })
    expect(c.source).toEqual({ dir: '.', exclude: ['.git', 'node_modules'] })
    expect(c.shared).toEqual({ files: [], dirs: [] })
    expect(c.keep_releases).toBe(5)
    expect(c.env).toEqual({})
    expect(c.stages).toEqual({})
    expect(c.verify).toEqual({ window: 0 })
    expect(c.lock).toEqual({ ttl: 1_800_000 })
    expect(c.log_dir).toBe('safe-deploy-logs')
    expect(c.ssh).toMatchObject({
      fingerprints: [],
      insecure_skip_host_key_check: false,
      connect_timeout: 10_000,
      connect_retries: 3,
      keepalive_interval: 10_000,
      command_timeout: 600_000
    })
  })

  test('env names must be environment variable names', () => {
    const r = configSchema.safeParse({
      app: 'a',
      path: '/srv/a',
      hosts: [{ local: true }],
      env: { 'BAD-NAME': 'x', 'A;touch x': 'y', GOOD_1: 'z' }
    })
    expect(r.success).toBe(false)
    const paths = r.error?.issues.map(i => i.path.join('.')).sort()
    expect(paths).toEqual(['env.A;touch x', 'env.BAD-NAME'])
  })

  test('keep_releases is an integer from 2 to 100', () => {
    const base = { app: 'a', path: '/srv/a', hosts: [{ local: true }] }
    expect(configSchema.safeParse({ ...base, keep_releases: 2 }).success).toBe(true)
    expect(configSchema.safeParse({ ...base, keep_releases: 100 }).success).toBe(true)
    expect(configSchema.safeParse({ ...base, keep_releases: 101 }).success).toBe(false)
    expect(configSchema.safeParse({ ...base, keep_releases: 2.5 }).success).toBe(false)
  })
})

describe('hostSchema', () => {
  test('a local host or an SSH host, never both', () => {
    expect(hostSchema.parse({ local: true })).toEqual({ local: true })
    expect(hostSchema.parse({ address: 'h', port: 2222, user: 'deploy' })).toMatchObject({
      address: 'h',
      port: 2222,
      user: 'deploy'
    })
    expect(hostSchema.safeParse({ local: true, address: 'h' }).success).toBe(false)
    expect(hostSchema.safeParse({ local: false }).success).toBe(false)
    expect(hostSchema.safeParse({ address: '' }).success).toBe(false)
    expect(hostSchema.safeParse({ address: 'a\nb' }).success).toBe(false)
    expect(hostSchema.safeParse({ address: 'h', user: 'x\ry' }).success).toBe(false)
  })
})
