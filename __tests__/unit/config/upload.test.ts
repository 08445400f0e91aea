/** `upload` picks how the source gets to the hosts (src/pipeline/upload/): tar is the default and the only one. */
import { describe, expect, test } from '@jest/globals'
import { configSchema } from '../../../src/config/schema.js'
import { formatZodError } from '../../../src/config/load.js'
import { uploadFor } from '../../../src/pipeline/upload/index.js'
import type { RunContext } from '../../../src/host/context.js'

const base = { app: 'shop', path: '/srv/shop', hosts: [{ local: true as const }] }

function parse(upload: unknown) {
  const r = configSchema.safeParse({ ...base, upload })
  return r.success ? { config: r.data } : { errors: formatZodError(r.error) }
}

describe('upload strategy', () => {
  test('tar when the key is left out, or given', () => {
    expect(parse(undefined).config?.upload).toEqual({ strategy: 'tar' })
    expect(parse({}).config?.upload).toEqual({ strategy: 'tar' })
    expect(parse({ strategy: 'tar' }).config?.upload).toEqual({ strategy: 'tar' })
  })

  test('an unknown strategy or key is refused by name', () => {
    expect(parse({ strategy: 'rsync' }).errors).toEqual([
      'upload.strategy: Invalid option: expected one of "tar", "incremental"'
    ])
    expect(parse({ strategy: 'tar', level: 9 }).errors).toEqual(['upload: Unrecognized key: "level"'])
  })

  test('the registry has the configured strategy', () => {
    const config = configSchema.parse(base)
    expect(uploadFor({ config } as RunContext).name).toBe('tar')
  })
})
