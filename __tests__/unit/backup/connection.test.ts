import { describe, expect, test } from '@jest/globals'
import {
  conninfoValue,
  databaseSecrets,
  parseDatabaseUrl,
  resolveConnection
} from '../../../src/backup-engines/connection.js'
import { backupSchema } from '../../../src/backup-engines/config.js'

const db = (v: Record<string, unknown>) => backupSchema.parse({ databases: [v] }).databases[0]!

describe('database URLs', () => {
  test('postgres: percent-encoded password, port, database, libpq parameters as environment', () => {
    expect(parseDatabaseUrl('postgres://u:p%40ss@h:5433/db?sslmode=require', 'postgres')).toEqual({
      host: 'h',
      port: 5433,
      user: 'u',
      password: 'p@ss',
      database: 'db',
      params: { PGSSLMODE: 'require' }
    })
  })

  test('postgresql:// too; IPv6 host; several parameters', () => {
    expect(
      parseDatabaseUrl('postgresql://app@[::1]/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem', 'postgres')
    ).toEqual({
      host: '::1',
      user: 'app',
      database: 'shop',
      params: { PGSSLMODE: 'verify-full', PGSSLROOTCERT: '/etc/ca.pem' }
    })
  })

  test('a unix socket dir, as a percent-encoded host or ?host=', () => {
    expect(parseDatabaseUrl('postgres://app@%2Fvar%2Frun%2Fpostgresql/shop', 'postgres')).toMatchObject({
      host: '/var/run/postgresql',
      database: 'shop'
    })
    expect(parseDatabaseUrl('postgres:///shop?host=/tmp', 'postgres')).toEqual({
      host: '/tmp',
      database: 'shop',
      params: {}
    })
  })

  test('mysql and mariadb URLs; client options from the query', () => {
    expect(parseDatabaseUrl('mysql://root:a%3Ab%2Fc%20d@db.example:3307/app', 'mysql')).toEqual({
      host: 'db.example',
      port: 3307,
      user: 'root',
      password: 'a:b/c d',
      database: 'app',
      params: {}
    })
    expect(parseDatabaseUrl('mariadb://u@h/app?ssl-ca=/etc/ca.pem', 'mysql').params).toEqual({
      'ssl-ca': '/etc/ca.pem'
    })
  })

  test.each([
    ['postgresql+psycopg2://app:p%40ss@db:5433/shop?sslmode=require', 'postgres'],
    ['postgresql+asyncpg://app:p%40ss@db:5433/shop?sslmode=require', 'postgres'],
    ['postgresql+psycopg://app:p%40ss@db:5433/shop?sslmode=require', 'postgres'],
    ['postgresql+pg8000://app:p%40ss@db:5433/shop?sslmode=require', 'postgres'],
    ['mysql+pymysql://app:p%40ss@db:5433/shop?charset=utf8mb4', 'mysql'],
    ['mysql+mysqldb://app:p%40ss@db:5433/shop', 'mysql'],
    ['mysql+mysqlconnector://app:p%40ss@db:5433/shop', 'mysql'],
    ['mariadb+mariadbconnector://app:p%40ss@db:5433/shop', 'mysql']
  ] as [string, 'postgres' | 'mysql'][])(
    'a SQLAlchemy URL %s: the driver suffix is ignored',
    (url, engine) => {
      expect(parseDatabaseUrl(url, engine)).toEqual({
        host: 'db',
        port: 5433,
        user: 'app',
        password: 'p@ss',
        database: 'shop',
        params: engine === 'postgres' ? { PGSSLMODE: 'require' } : {}
      })
      expect(databaseSecrets(db({ engine, url }))).toEqual([url, 'p%40ss', 'p@ss'])
    }
  )

  test.each([
    [
      'mysql+pymysql://u:p@h/db',
      'postgres',
      'the URL scheme is mysql+pymysql; for engine postgres use postgres:// or postgresql://'
    ],
    ['postgresql+psycopg2://u:p@h/db', 'mysql', 'the URL scheme is postgresql+psycopg2; for engine mysql'],
    [
      'postgresql+psycopg2://u:p@h/db?ssl=true',
      'postgres',
      'unknown connection parameter ?ssl= (libpq parameters only)'
    ],
    [
      'mysql://u:p@h/db',
      'postgres',
      'the URL scheme is mysql; for engine postgres use postgres:// or postgresql://'
    ],
    [
      'postgres://u:p@h/db',
      'mysql',
      'the URL scheme is postgres; for engine mysql use mysql:// or mariadb://'
    ],
    ['postgres://u:p@h/db?evil=1', 'postgres', 'unknown connection parameter ?evil= (libpq parameters only)'],
    ['mysql://u:p@h/db?init-command=DROP', 'mysql', 'unknown connection parameter ?init-command='],
    ['postgres://u:p@h/a/b', 'postgres', 'the URL path must be just the database name'],
    ['not a url', 'postgres', 'not a URL'],
    ['postgres://u:%E0%A4%A@h/db', 'postgres', 'the password in the URL is not valid percent-encoding']
  ] as [string, 'postgres' | 'mysql', string][])('%s as %s: %s', (url, engine, message) => {
    expect(() => parseDatabaseUrl(url, engine)).toThrow(message)
  })

  test('errors never repeat the URL or its password', () => {
    for (const url of ['postgres://u:hunter2secret@h/a/b', 'mysql://u:hunter2secret@h/db?x=1']) {
      try {
        parseDatabaseUrl(url, url.startsWith('mysql') ? 'mysql' : 'postgres')
        throw new Error('expected a failure')
      } catch (e) {
        expect((e as Error).message).not.toContain('hunter2secret')
      }
    }
  })

  test('fields win over the URL', () => {
    expect(
      resolveConnection(
        db({ engine: 'postgres', url: 'postgres://a:b@h:1/x', user: 'other', password: 'pw', port: 5432 })
      )
    ).toEqual({ host: 'h', port: 5432, user: 'other', password: 'pw', database: 'x', params: {} })
    expect(resolveConnection(db({ engine: 'mysql', host: 'h', user: 'u', database: 'd' }))).toEqual({
      host: 'h',
      user: 'u',
      database: 'd',
      params: {}
    })
  })

  test('secrets: the password as given, decoded and encoded from a URL, and the URL itself', () => {
    expect(
      databaseSecrets(db({ engine: 'postgres', url: 'postgres://u:p%40ss@h/db', password: 'x1' }))
    ).toEqual(['x1', 'postgres://u:p%40ss@h/db', 'p%40ss', 'p@ss'])
    expect(databaseSecrets(db({ engine: 'sqlite', path: '/d.db' }))).toEqual([])
  })

  test("conninfo values: bare when plain, else quoted with \\ and ' escaped", () => {
    expect(conninfoValue('shop')).toBe('shop')
    expect(conninfoValue("it's a \\db")).toBe("'it\\'s a \\\\db'")
    expect(conninfoValue('')).toBe("''")
  })
})
