/**
 * The engine registry (src/backup-engines/index.ts) is the one list of engines: the config schema, the
 * artifact names, the descriptions and the restore policy all follow it, so an engine added there (one
 * file and one line) is wired everywhere.
 */
import { describe, expect, test } from '@jest/globals'
import { backupSchema } from '../../../src/backup-engines/config.js'
import {
  describeTarget,
  ENGINE_IDS,
  ENGINES,
  FORMATS,
  type ArtifactKind
} from '../../../src/backup-engines/index.js'
import type { Target } from '../../../src/backup-engines/target.js'
import {
  artifactFile,
  isBackupName,
  parseArtifactFile,
  parseBackupFileName,
  type BackupName,
  type Compression
} from '../../../src/backup-engines/name.js'
import { parseBackupTime } from '../../../src/backup-engines/retention.js'
import { RestoreError } from '../../../src/backup/ops/restore.js'
import { probeKey } from '../../../src/backup/script.js'
import { targetLines } from '../../../src/backup/ops/probe.js'
import { parseKeyValues } from '../../../src/commands/release.js'

const NAME = 'shop_20261121_193005' as BackupName
const target = (engine: Target['engine'], index = 0): Target => ({
  index,
  engine,
  label: 'app',
  conn: { params: {} },
  compress: 'gzip'
})

describe('the engine registry', () => {
  test('the config accepts exactly the registered engines', () => {
    expect(ENGINE_IDS).toEqual(Object.keys(ENGINES))
    for (const engine of ENGINE_IDS)
      expect(backupSchema.safeParse({ databases: [{ engine, database: 'app' }] }).success).toBe(true)
    expect(backupSchema.safeParse({ databases: [{ engine: 'oracle', database: 'app' }] }).success).toBe(false)
  })

  test('every engine has its own name, title and file extension', () => {
    for (const [id, engine] of Object.entries(ENGINES)) expect(engine.id).toBe(id)
    const exts = Object.values(FORMATS).map(f => f.ext)
    expect(new Set(exts).size).toBe(exts.length)
    expect(describeTarget(target('postgres'))).toBe('PostgreSQL database "app"')
    expect(describeTarget(target('mysql'))).toBe('MySQL database "app"')
    expect(describeTarget(target('sqlite'))).toBe('SQLite database "app"')
  })

  const kinds = Object.keys(FORMATS) as ArtifactKind[]
  const cases = kinds.flatMap(kind =>
    (['gzip', 'zstd', 'none'] as Compression[]).flatMap(compress =>
      [false, true].flatMap(encrypted =>
        (kind === 'files' ? [undefined] : [undefined, 'orders']).map(label => ({
          kind,
          compress,
          encrypted,
          label
        }))
      )
    )
  )
  test.each(cases)('the file name of %o reads back as the same artifact', a => {
    const file = artifactFile(NAME, a)
    const compress = FORMATS[a.kind].compressible ? a.compress : 'none'
    expect(parseArtifactFile(NAME, file)).toEqual({ ...a, compress, file })
  })

  test('a compression the format does not take is not an artifact (NAME.dump.gz)', () => {
    expect(parseArtifactFile(NAME, `${NAME}.dump.gz`)).toBeUndefined()
    expect(parseArtifactFile(NAME, `${NAME}.sql.gz`)).toMatchObject({ kind: 'mysql', compress: 'gzip' })
  })

  test("a failed restore changed the data unless the engine's restore is all or nothing", () => {
    const failed = (kind: ArtifactKind) =>
      new RestoreError('restore', 'x', 'web1', [], { kind, compress: 'none', encrypted: false, file: 'f' })
    expect(failed('postgres').changed).toBe(false)
    expect(failed('sqlite').changed).toBe(false)
    expect(failed('mysql').changed).toBe(true)
    expect(failed('files').changed).toBe(true)
    expect(
      new RestoreError('restore', 'x', 'web1', ['a'], {
        kind: 'postgres',
        compress: 'none',
        encrypted: false,
        file: 'f'
      }).changed
    ).toBe(true)
  })
})

describe('one backup-name pattern', () => {
  test.each([
    ['shop_20261121_193005', true],
    ['my_app_2024_20260301_000000', true],
    ['shop_20250230_000000', false],
    ['shop_20261121_193005.dump', false]
  ])('%s is a backup name: %s; the retention reads the same time', (name, ok) => {
    expect(isBackupName(name)).toBe(ok)
    expect(parseBackupTime(name)).toEqual(parseBackupFileName(name)?.time)
  })

  test('a file of a backup names its backup, its app and what follows', () => {
    expect(parseBackupFileName('my_app_2024_20260301_000000.sql.zst.age')).toEqual({
      app: 'my_app_2024',
      stem: 'my_app_2024_20260301_000000',
      time: new Date('2026-03-01T00:00:00Z'),
      rest: '.sql.zst.age'
    })
    expect(parseBackupFileName('.partial.shop_20261121_193005.abc')).toBeUndefined()
  })
})

describe('probe lines', () => {
  test('DB_<KEY>=<index> lines are read by the one KEY=value parser, per target', () => {
    const one = target('mysql', 1)
    const ten = target('mysql', 10)
    const out = [
      `${probeKey(one, 'DUMP')}mariadb-dump`,
      `${probeKey(ten, 'DUMP')}mysqldump`,
      `${probeKey(one, 'ERROR')}`,
      `${probeKey(ten, 'SERVER')}8.0.36\t4096`,
      'MISSING=zstd',
      'FREE_KB=100'
    ].join('\n')
    const kv = parseKeyValues(out)
    expect(targetLines(kv, 1)).toEqual(
      new Map([
        ['DUMP', ['mariadb-dump']],
        ['ERROR', ['']]
      ])
    )
    expect(targetLines(kv, 10)).toEqual(
      new Map([
        ['DUMP', ['mysqldump']],
        ['SERVER', ['8.0.36\t4096']]
      ])
    )
    expect(kv.get('MISSING')).toEqual(['zstd'])
  })
})
