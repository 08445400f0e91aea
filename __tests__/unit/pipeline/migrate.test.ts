import { describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { deploysBetween, downCommand, parseRevision } from '../../../src/pipeline/migrate.js'
import { databaseRollbackMode, migrationProblems } from '../../../src/config/rules.js'
import { configSchema } from '../../../src/config/schema.js'
import type { HistoryEntry } from '../../../src/release/history.js'
import { posixOnly } from '../helpers/platform.js'

const base = { app: 'shop', path: '/srv/shop', hosts: [{ address: 'web-1' }] }
const config = (extra: Record<string, unknown>) => configSchema.parse({ ...base, ...extra })
const pg = { databases: [{ engine: 'postgres', url: 'postgres://u:p@h/db' }] }

describe('parseRevision', () => {
  test('alembic current: the first word of the last line', () => {
    expect(parseRevision('ae1027a6acf (head)\n')).toBe('ae1027a6acf')
    expect(parseRevision('INFO context\n\n  3f2a1c9 (head)  \n\n')).toBe('3f2a1c9')
  })
  test('an empty database prints nothing: empty revision', () => {
    expect(parseRevision('')).toBe('')
    expect(parseRevision('\n \n')).toBe('')
  })
})

describe('downCommand', () => {
  test('{revision} is replaced, quoted', () => {
    expect(downCommand('alembic downgrade {revision}', 'ae1027a6acf')).toBe('alembic downgrade ae1027a6acf')
    expect(downCommand('flask db downgrade {revision}', '')).toBe("flask db downgrade ''")
  })
  // /bin/sh runs it, as on the host
  posixOnly('a hostile revision stays a literal argument when the shell runs it', () => {
    const rev = "x'; touch /tmp/never-$$ $(id) `id`"
    const out = execFileSync('/bin/sh', ['-c', downCommand('printf %s {revision}', rev)], {
      encoding: 'utf8'
    })
    expect(out).toBe(rev)
  })
})

describe('rollback.database default and rules', () => {
  test('down when migrate.down and migrate.revision are set', () => {
    expect(
      databaseRollbackMode(
        config({ stages: { migrate: { command: 'm', revision: 'r', down: 'd {revision}' } }, backup: pg })
      )
    ).toBe('down')
  })
  test('a down without a revision command is not the default: restore with backups, else none', () => {
    // `php artisan migrate:rollback` undoes the last batch, which may be the previous release's
    const migrate = { command: 'php artisan migrate --force', down: 'php artisan migrate:rollback --force' }
    expect(databaseRollbackMode(config({ stages: { migrate }, backup: pg }))).toBe('restore')
    expect(databaseRollbackMode(config({ stages: { migrate } }))).toBe('none')
    expect(databaseRollbackMode(config({ stages: { migrate }, rollback: { database: 'down' } }))).toBe('down')
  })
  test('a down that uses {revision} needs a revision command to read it', () => {
    expect(
      migrationProblems(config({ stages: { migrate: { command: 'm', down: 'd {revision}' } } }))
    ).toEqual([
      'stages.migrate.down uses {revision}, but there is no stages.migrate.revision to read it (e.g. alembic current)'
    ])
  })
  test('restore when backups are on and there is no down command', () => {
    expect(databaseRollbackMode(config({ stages: { migrate: 'alembic upgrade head' }, backup: pg }))).toBe(
      'restore'
    )
  })
  test('none without either', () => {
    expect(databaseRollbackMode(config({ stages: { migrate: 'alembic upgrade head' } }))).toBe('none')
    expect(databaseRollbackMode(config({ stages: { migrate: 'm' }, backup: false }))).toBe('none')
  })
  test('explicit wins', () => {
    expect(
      databaseRollbackMode(
        config({
          stages: { migrate: { command: 'm', down: 'd' } },
          backup: pg,
          rollback: { database: 'restore' }
        })
      )
    ).toBe('restore')
  })
  test('impossible combinations are config problems', () => {
    expect(migrationProblems(config({ rollback: { database: 'down' } }))).toEqual([
      'rollback.database: down needs stages.migrate.down (e.g. alembic downgrade {revision})'
    ])
    expect(migrationProblems(config({ rollback: { database: 'restore' } }))).toEqual([
      'rollback.database: restore needs backups (backup.databases) to restore from'
    ])
    expect(migrationProblems(config({ rollback: { database: 'restore' }, backup: pg }))).toEqual([])
  })
})

describe('deploysBetween', () => {
  const entry = (release: string, status: HistoryEntry['status'], migrated?: boolean): HistoryEntry => ({
    type: 'deploy',
    release,
    status,
    migrated,
    actor: 'a',
    started: '',
    finished: '',
    duration_s: 0,
    hosts: []
  })
  const h = [
    entry('20261101T000000Z-aaaaaaa', 'success'),
    entry('20261102T000000Z-bbbbbbb', 'success', true),
    entry('20261103T000000Z-ccccccc', 'rolled-back', true),
    entry('20261104T000000Z-ddddddd', 'success', true),
    entry('20261105T000000Z-eeeeeee', 'success')
  ]
  test('successful deploys after the target up to the release being left', () => {
    expect(
      deploysBetween(h, '20261101T000000Z-aaaaaaa', '20261104T000000Z-ddddddd').map(e => e.release)
    ).toEqual(['20261102T000000Z-bbbbbbb', '20261104T000000Z-ddddddd'])
  })
  test('nothing when going back one step without migration', () => {
    expect(
      deploysBetween(h, '20261104T000000Z-ddddddd', '20261105T000000Z-eeeeeee').filter(e => e.migrated)
    ).toEqual([])
  })
})
