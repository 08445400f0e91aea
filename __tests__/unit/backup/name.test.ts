import { describe, expect, test } from '@jest/globals'
import { ConfigError, ExitCode } from '../../../src/core/exit.js'
import {
  appOf,
  artifactFile,
  backupTime,
  isBackupName,
  manifestFile,
  metaFile,
  newBackupName,
  parseArtifactFile,
  parseBackupName,
  type Artifact,
  type BackupName
} from '../../../src/backup-engines/name.js'

const NAME = 'shop_20261121_193005' as BackupName

describe('backup names', () => {
  test('<app>_YYYYMMDD_HHMMSS in UTC, zero-padded', () => {
    expect(newBackupName('shop', new Date('2026-11-21T19:30:05.999Z'))).toBe('shop_20261121_193005')
    expect(newBackupName('a.b-c_d', new Date('2026-01-02T03:04:05Z'))).toBe('a.b-c_d_20260102_030405')
  })

  test('an app name with underscores and digits keeps the timestamp last', () => {
    const n = newBackupName('my_app_2024', new Date('2026-03-01T00:00:00Z'))
    expect(n).toBe('my_app_2024_20260301_000000')
    expect(appOf(n)).toBe('my_app_2024')
    expect(backupTime(n).toISOString()).toBe('2026-03-01T00:00:00.000Z')
  })

  test.each([
    ['shop_20261121_193005', true],
    ['shop_20250230_000000', false],
    ['shop_20261321_000000', false],
    ['shop_20261121_246000', false],
    ['shop_20261121_1930', false],
    ['shop_20261121_193005.dump', false],
    ['_20261121_193005', false],
    ['shop 20261121_193005', false],
    ['../shop_20261121_193005', false],
    ['shop_20261121_193005; rm -rf /', false],
    ['', false]
  ])('isBackupName(%j) is %s', (v, ok) => {
    expect(isBackupName(v)).toBe(ok)
  })

  test('a malformed name given by a person is bad input (exit 2), with the expected form', () => {
    let err: unknown
    try {
      parseBackupName('latest; rm -rf /', 'shop')
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).exitCode).toBe(ExitCode.badInput)
    expect((err as Error).message).toContain(
      'expected <app>_YYYYMMDD_HHMMSS (UTC), e.g. shop_20261121_193000'
    )
  })

  test("another app's backup is refused", () => {
    expect(() => parseBackupName('blog_20261121_193005', 'shop')).toThrow(
      'backup name blog_20261121_193005 belongs to app blog, but this config is for shop'
    )
    expect(parseBackupName('shop_20261121_193005', 'shop')).toBe('shop_20261121_193005')
  })
})

describe('artifact files', () => {
  test.each([
    [{ kind: 'postgres', compress: 'none', encrypted: false }, 'shop_20261121_193005.dump'],
    [{ kind: 'postgres', compress: 'gzip', encrypted: true }, 'shop_20261121_193005.dump.age'],
    [{ kind: 'mysql', compress: 'gzip', encrypted: false }, 'shop_20261121_193005.sql.gz'],
    [{ kind: 'mysql', compress: 'zstd', encrypted: true }, 'shop_20261121_193005.sql.zst.age'],
    [{ kind: 'mysql', compress: 'none', encrypted: false }, 'shop_20261121_193005.sql'],
    [{ kind: 'sqlite', compress: 'gzip', encrypted: false }, 'shop_20261121_193005.sqlite3.gz'],
    [{ kind: 'files', compress: 'gzip', encrypted: false }, 'shop_20261121_193005.files.tar.gz'],
    [{ kind: 'files', compress: 'gzip', encrypted: true }, 'shop_20261121_193005.files.tar.gz.age'],
    [
      { kind: 'postgres', label: 'main', compress: 'none', encrypted: false },
      'shop_20261121_193005.main.dump'
    ],
    [{ kind: 'mysql', label: 'crm', compress: 'zstd', encrypted: false }, 'shop_20261121_193005.crm.sql.zst']
  ] as [Omit<Artifact, 'file'>, string][])('%j -> %s, and back', (a, file) => {
    expect(artifactFile(NAME, a)).toBe(file)
    const back = parseArtifactFile(NAME, file)
    expect(back).toEqual({
      ...a,
      label: a.label,
      compress: a.kind === 'postgres' ? 'none' : a.compress,
      file
    })
  })

  test('the manifest, the meta file and strangers are not artifacts', () => {
    expect(manifestFile(NAME)).toBe('shop_20261121_193005.sha256')
    expect(metaFile(NAME)).toBe('shop_20261121_193005.meta.json')
    for (const f of [
      manifestFile(NAME),
      metaFile(NAME),
      'shop_20261121_193005.dump.partial',
      'shop_20261121_193006.dump',
      'shop_20261121_193005.txt',
      'shop_20261121_193005.files.files.tar.gz',
      'shop_20261121_193005'
    ])
      expect(parseArtifactFile(NAME, f)).toBeUndefined()
  })
})
