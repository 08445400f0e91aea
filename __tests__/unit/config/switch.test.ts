/**
 * `switch` is one variant per strategy (src/config/schema.ts): each strategy's own keys, validated once by the
 * schema, and every variant has its implementation in the registry (src/pipeline/switch.ts).
 */
import { describe, expect, test } from '@jest/globals'
import { configSchema, type RawConfig } from '../../../src/config/schema.js'
import { formatZodError } from '../../../src/config/load.js'
import { strategyFor } from '../../../src/pipeline/switch.js'
import type { RunContext } from '../../../src/host/context.js'

const base = { app: 'shop', path: '/srv/shop', hosts: [{ local: true as const }] }
const BLUE_GREEN = {
  strategy: 'blue-green' as const,
  ports: [3001, 3002] as [number, number],
  start: 'bin/start',
  stop: 'bin/stop',
  upstream_file: '/etc/nginx/conf.d/shop.conf',
  proxy_reload: 'nginx -s reload'
}

function parse(sw: unknown) {
  const r = configSchema.safeParse({ ...base, switch: sw })
  return r.success ? { config: r.data } : { errors: formatZodError(r.error) }
}

describe('switch settings per strategy', () => {
  test('symlink (the default) has no settings of its own', () => {
    expect(parse(undefined).config?.switch).toEqual({ strategy: 'symlink' })
    expect(parse({}).config?.switch).toEqual({ strategy: 'symlink' })
  })

  test('graceful has reload only', () => {
    expect(parse({ strategy: 'graceful', reload: 'systemctl reload shop' }).config?.switch).toEqual({
      strategy: 'graceful',
      reload: 'systemctl reload shop'
    })
  })

  test('blue-green gets its defaults', () => {
    expect(parse(BLUE_GREEN).config?.switch).toEqual({
      ...BLUE_GREEN,
      health: 'http://127.0.0.1:{port}/health',
      upstream_template: 'server 127.0.0.1:{port};',
      drain: 2000,
      timeout: 60_000
    })
  })

  test('the required keys of a strategy are named once each', () => {
    expect(parse({ strategy: 'graceful' }).errors).toEqual(['switch.reload: required for strategy graceful'])
    expect(parse({ strategy: 'blue-green' }).errors).toEqual(
      ['ports', 'start', 'stop', 'upstream_file', 'proxy_reload'].map(
        k => `switch.${k}: required for strategy blue-green`
      )
    )
    expect(parse({ ...BLUE_GREEN, ports: [3001, 3001] }).errors).toEqual([
      'switch.ports: expected two different ports'
    ])
    expect(parse({ strategy: 'rolling' }).errors).toEqual([
      'switch.strategy: Invalid option: expected one of "symlink"|"graceful"|"blue-green"'
    ])
  })

  test('a key of another strategy is refused and says whose it is', () => {
    expect(parse({ reload: 'systemctl reload shop' }).errors).toEqual([
      'switch: Unrecognized key: "reload" (for strategy graceful; this switch is symlink)'
    ])
    expect(parse({ strategy: 'graceful', reload: 'x', ports: [1, 2], drain: '1s' }).errors).toEqual([
      'switch: Unrecognized keys: "ports", "drain" (for strategy blue-green; this switch is graceful)'
    ])
    expect(parse({ ...BLUE_GREEN, reload: 'x', colour: 'blue' }).errors).toEqual([
      'switch: Unrecognized keys: "reload", "colour" (for strategy graceful; this switch is blue-green)'
    ])
  })

  test('every strategy of the schema has an implementation of that name', () => {
    const variants: RawConfig['switch'][] = [
      { strategy: 'symlink' },
      { strategy: 'graceful', reload: 'x' },
      BLUE_GREEN
    ]
    for (const sw of variants) {
      const config = configSchema.parse({ ...base, switch: sw })
      expect(strategyFor({ config } as RunContext).name).toBe(sw?.strategy)
    }
  })
})
