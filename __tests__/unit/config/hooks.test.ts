import { describe, expect, test } from '@jest/globals'
import { configSchema } from '../../../src/config/schema.js'

const base = { app: 'a', path: '/srv/a', hosts: [{ local: true }] }

describe('hooks in the config', () => {
  test('none by default; each named hook is a command', () => {
    expect(configSchema.parse(base).hooks).toEqual({})
    const c = configSchema.parse({
      ...base,
      hooks: {
        before_switch: 'php artisan down',
        after_verify: 'php artisan up',
        after_rollback: 'php artisan up'
      }
    })
    expect(c.hooks).toEqual({
      before_switch: 'php artisan down',
      after_verify: 'php artisan up',
      after_rollback: 'php artisan up'
    })
  })

  test('an unknown hook name or an empty command is refused, naming the key', () => {
    const r = configSchema.safeParse({ ...base, hooks: { before_deploy: 'x', after_verify: '' } })
    expect(r.success).toBe(false)
    expect(r.error?.issues.map(i => [i.path.join('.'), i.code]).sort()).toEqual([
      ['hooks', 'unrecognized_keys'],
      ['hooks.after_verify', 'too_small']
    ])
  })
})
