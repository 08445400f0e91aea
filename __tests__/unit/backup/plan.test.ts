import { describe, expect, test } from '@jest/globals'
import { Layout } from '../../../src/commands/layout.js'
import { backupSchema } from '../../../src/backup-engines/config.js'
import { checkBackupConfig, resolvePlan } from '../../../src/backup-engines/plan.js'
import { validateConfig } from '../../../src/config/load.js'
import { ConfigError } from '../../../src/core/exit.js'

const parse = (b: Record<string, unknown>) => backupSchema.parse(b)

describe('checkBackupConfig', () => {
  test('a good config has no problems; its secrets are listed for redaction', () => {
    const r = checkBackupConfig(
      parse({
        databases: [
          { engine: 'postgres', url: 'postgres://app:p%40ss@db:5432/shop' },
          { engine: 'mysql', name: 'crm', host: 'db', user: 'u', password: 'inline-pw', database: 'crm' },
          { engine: 'sqlite', path: 'shared/app.db' }
        ],
        files: ['shared/.env'],
        encrypt: { recipients: ['age1xyz'], identity: 'AGE-SECRET-KEY-1ABC' }
      })
    )
    expect(r.problems).toEqual([])
    expect(r.secrets).toEqual([
      'postgres://app:p%40ss@db:5432/shop',
      'p%40ss',
      'p@ss',
      'inline-pw',
      'AGE-SECRET-KEY-1ABC'
    ])
  })

  test('every problem is reported with its key path', () => {
    const r = checkBackupConfig(
      parse({
        databases: [
          { engine: 'postgres', url: 'mysql://u:p@h/db' },
          { engine: 'mysql', host: 'db' },
          { engine: 'sqlite' },
          { engine: 'sqlite', path: '../etc/passwd' },
          { engine: 'sqlite', path: 'rel.db', container: 'app' },
          { engine: 'postgres', name: 'files', database: 'x' },
          { engine: 'postgres', database: 'x', compose_dir: 'a' }
        ],
        files: ['/etc/shadow', 'shared/../../x'],
        retention: { daily: 0, weekly: 0, monthly: 0 }
      })
    )
    expect(r.problems).toEqual([
      'backup.databases[0].url: the URL scheme is mysql; for engine postgres use postgres:// or postgresql://',
      'backup.databases[1].database: name the database to back up (database: app, or a URL ending in /app)',
      'backup.databases[2].path: the SQLite database file is required for engine sqlite',
      'backup.databases[3].path: expected an absolute path or one relative to the deploy root, without ..',
      'backup.databases[4].path: inside a container the SQLite path must be absolute',
      'backup.databases[5].name: "files" is taken by the files archive; choose another',
      'backup.databases[6].compose_dir: only with container',
      'backup.files[0]: expected a path relative to the deploy root, without ..',
      'backup.files[1]: expected a path relative to the deploy root, without ..',
      expect.stringMatching(/^backup\.retention: a retention policy that keeps nothing is refused/)
    ])
  })

  test('two databases with one label are refused (their artifacts would share a name)', () => {
    expect(
      checkBackupConfig(
        parse({
          databases: [
            { engine: 'postgres', database: 'app' },
            { engine: 'mysql', database: 'app' }
          ]
        })
      ).problems
    ).toEqual([
      'backup.databases[1]: databases[0] and databases[1] are both called "app"; give one a distinct name'
    ])
  })

  test('nothing to back up is refused; backup: false is fine', () => {
    expect(checkBackupConfig(parse({})).problems).toEqual([
      'backup: nothing to back up; list databases or files (or set backup: false)'
    ])
    expect(checkBackupConfig(false)).toEqual({ problems: [], secrets: [] })
    expect(checkBackupConfig(undefined)).toEqual({ problems: [], secrets: [] })
  })
})

describe('resolvePlan', () => {
  test('paths resolve against the deploy root; labels name artifacts only when there are several', () => {
    const one = resolvePlan(
      'shop',
      parse({ databases: [{ engine: 'sqlite', path: 'shared/app.db' }] }),
      new Layout('/srv/shop/')
    )
    expect(one.dir).toBe('/srv/shop/backups')
    expect(one.targets[0]).toMatchObject({
      label: 'app',
      fileLabel: undefined,
      path: '/srv/shop/shared/app.db',
      compress: 'gzip'
    })
    const two = resolvePlan(
      'shop',
      parse({
        dir: '/var/backups/shop/',
        databases: [
          { engine: 'postgres', url: 'postgres://u:secret@h/main', container: 'db' },
          {
            engine: 'mysql',
            database: 'crm',
            compress: 'zstd',
            container: 'mysql',
            compose_dir: '/opt/stack'
          }
        ]
      }),
      new Layout('/srv/shop')
    )
    expect(two.dir).toBe('/var/backups/shop')
    expect(two.targets.map(t => [t.label, t.fileLabel, t.compress, t.container, t.passwordVar])).toEqual([
      ['main', 'main', 'none', { service: 'db', dir: '/srv/shop/current' }, 'sd_pw0'],
      ['crm', 'crm', 'zstd', { service: 'mysql', dir: '/opt/stack' }, undefined]
    ])
    // the password lives only in secretEnv, never on the target
    expect(two.targets[0]?.conn.password).toBeUndefined()
    expect(two.secretEnv).toEqual({ SD_DB0_PASSWORD: 'secret' })
  })
})

describe('loading a config with backups', () => {
  const base = { app: 'shop', path: '/srv/shop', hosts: [{ local: true }] }

  test('inline and URL passwords and the identity are secrets, however given', () => {
    const loaded = validateConfig(
      {
        ...base,
        backup: {
          databases: [
            { engine: 'postgres', url: 'postgres://app:url%2Fpass@db/shop' },
            { engine: 'mysql', name: 'crm', database: 'crm', password: 'inline-password' }
          ],
          encrypt: { recipients: ['age1xyz'], identity: 'env:AGE_IDENTITY' }
        }
      },
      '/x/safe-deploy.yml',
      {},
      { AGE_IDENTITY: 'AGE-SECRET-KEY-1QQQQQQQ' }
    )
    expect(loaded.secrets).toEqual(
      expect.arrayContaining(['url/pass', 'url%2Fpass', 'inline-password', 'AGE-SECRET-KEY-1QQQQQQQ'])
    )
  })

  test('a bad URL fails the load (exit 2) before anything connects, without echoing the password', () => {
    let err: unknown
    try {
      validateConfig(
        {
          ...base,
          backup: { databases: [{ engine: 'postgres', url: 'postgres://u:topsecret@h/db?bogus=1' }] }
        },
        '/x/safe-deploy.yml'
      )
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toContain('backup.databases[0].url: unknown connection parameter ?bogus=')
    expect((err as Error).message).not.toContain('topsecret')
  })
})
