/** The build cache's key and the config rules that keep state and secrets out of it. */
import { describe, expect, test } from '@jest/globals'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { configSchema } from '../../../src/config/schema.js'
import { cacheProblems } from '../../../src/config/rules.js'
import { cacheKey } from '../../../src/pipeline/buildlocal.js'

const base = { app: 'shop', path: '/srv/shop', hosts: [{ local: true as const }] }
const problems = (extra: Record<string, unknown>) => cacheProblems(configSchema.parse({ ...base, ...extra }))
const withBuild = { stages: { build_local: 'npm ci' } }

describe('cacheKey', () => {
  test('the app name and the sha256 of each key file (path and bytes, in order)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'key-'))
    writeFileSync(join(dir, 'package-lock.json'), '{"a":1}')
    writeFileSync(join(dir, 'b.lock'), 'b')
    const k = cacheKey('shop', dir, ['package-lock.json', 'b.lock'])
    const sha = createHash('sha256').update('package-lock.json\0{"a":1}\0b.lock\0b\0').digest('hex')
    expect(k).toEqual({ key: `safe-deploy-shop-${sha}` })
    // another order, another key; another app, another key
    expect(cacheKey('shop', dir, ['b.lock', 'package-lock.json'])).not.toEqual(k)
    expect(cacheKey('web', dir, ['package-lock.json', 'b.lock'])).not.toEqual(k)
    writeFileSync(join(dir, 'b.lock'), 'c')
    expect(cacheKey('shop', dir, ['package-lock.json', 'b.lock'])).not.toEqual(k)
  })

  test('missing key files are named', () => {
    const dir = mkdtempSync(join(tmpdir(), 'key-'))
    expect(cacheKey('shop', dir, ['composer.lock'])).toEqual({ missing: ['composer.lock'] })
  })
})

describe('cache: config rules', () => {
  test('ordinary dependency dirs are fine', () => {
    expect(
      problems({ ...withBuild, cache: { paths: ['node_modules', 'vendor/'], key_files: ['a'] } })
    ).toEqual([])
  })

  test('no stages.build_local: nothing to cache for', () => {
    expect(problems({ cache: { paths: ['node_modules'], key_files: ['a'] } })).toEqual([
      'cache: caches what stages.build_local uses; there is no stages.build_local'
    ])
  })

  test('.env files, state dirs and shared paths are refused', () => {
    expect(
      problems({
        ...withBuild,
        shared: { files: ['config/app.ini'], dirs: ['storage'] },
        cache: { paths: ['.env.production', 'x/.env', '.git', 'storage/cache', 'config'], key_files: ['a'] }
      })
    ).toEqual([
      'cache.paths[0]: .env.production is an .env file or under one: secrets are never cached',
      'cache.paths[1]: x/.env is an .env file or under one: secrets are never cached',
      'cache.paths[2]: .git holds state (.git, .safe-deploy): never cached',
      'cache.paths[3]: storage/cache overlaps the shared path storage: shared files and dirs hold state and secrets, never cached',
      'cache.paths[4]: config overlaps the shared path config/app.ini: shared files and dirs hold state and secrets, never cached'
    ])
  })

  test('absolute paths and paths outside source.dir are refused by the schema', () => {
    for (const p of ['/etc', '../up', 'a/../../b', '.'])
      expect(
        configSchema.safeParse({ ...base, ...withBuild, cache: { paths: [p], key_files: ['a'] } }).success
      ).toBe(false)
  })
})
