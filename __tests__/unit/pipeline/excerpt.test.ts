import { describe, expect, test } from '@jest/globals'
import { lastLines, oneLine } from '../../../src/core/excerpt.js'

/** What `alembic upgrade head` prints (SQLAlchemy 2.0, psycopg2) when a migration selects from a missing table. */
const SQLALCHEMY_TRACEBACK = `Traceback (most recent call last):
  File "/srv/shop/releases/20261121T193000Z-3f2a1c9/.venv/lib/python3.12/site-packages/sqlalchemy/engine/base.py", line 1967, in _exec_single_context
    self.dialect.do_execute(
  File "/srv/shop/releases/20261121T193000Z-3f2a1c9/.venv/lib/python3.12/site-packages/sqlalchemy/engine/default.py", line 941, in do_execute
    cursor.execute(statement, parameters)
psycopg2.errors.UndefinedTable: relation "userz" does not exist
LINE 1: INSERT INTO userz (name) VALUES ('admin')
                    ^


The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/srv/shop/releases/20261121T193000Z-3f2a1c9/.venv/bin/alembic", line 8, in <module>
    sys.exit(main())
             ^^^^^^
  File "/srv/shop/releases/20261121T193000Z-3f2a1c9/migrations/versions/0003_admin.py", line 19, in upgrade
    op.execute("INSERT INTO userz (name) VALUES ('admin')")
  File "/srv/shop/releases/20261121T193000Z-3f2a1c9/.venv/lib/python3.12/site-packages/sqlalchemy/engine/default.py", line 941, in do_execute
    cursor.execute(statement, parameters)
sqlalchemy.exc.ProgrammingError: (psycopg2.errors.UndefinedTable) relation "userz" does not exist
LINE 1: INSERT INTO userz (name) VALUES ('admin')
                    ^

[SQL: INSERT INTO userz (name) VALUES ('admin')]
(Background on this error at: https://sqlalche.me/e/20/f405)
`

const EXCEPTION =
  'sqlalchemy.exc.ProgrammingError: (psycopg2.errors.UndefinedTable) relation "userz" does not exist'

describe('lastLines', () => {
  test('keeps the exception line of a traceback even when it is further up than n lines', () => {
    expect(lastLines(SQLALCHEMY_TRACEBACK, 2)).toBe(
      `${EXCEPTION}\n[SQL: INSERT INTO userz (name) VALUES ('admin')]`
    )
    const eight = lastLines(SQLALCHEMY_TRACEBACK, 8).split('\n')
    expect(eight).toHaveLength(8)
    expect(eight).toContain(EXCEPTION)
    expect(eight.join('\n')).not.toContain('Background on this error')
  })

  test('plain output is cut to its last n lines, as before', () => {
    expect(lastLines('a\nb\nc\nd\n', 2)).toBe('c\nd')
    expect(lastLines('only\n', 3)).toBe('only')
    expect(lastLines('', 3)).toBe('')
  })

  test('a tool’s own ERROR: line is kept (psql)', () => {
    const psql =
      'ERROR:  relation "userz" does not exist\nLINE 1: select * from userz;\n                      ^\n'
    expect(lastLines(psql, 1)).toBe('ERROR:  relation "userz" does not exist')
  })
})

describe('oneLine (the verdict)', () => {
  test('a failed migration keeps the exception line, not the last frame or SQLAlchemy’s footer', () => {
    const message = `\`alembic upgrade head\` failed on web-1 (exit 1): ${lastLines(SQLALCHEMY_TRACEBACK, 8)}`
    expect(oneLine(message)).toBe(`\`alembic upgrade head\` failed on web-1 (exit 1) … ${EXCEPTION}`)
    // the whole traceback, as a migrate command's message can carry it
    expect(oneLine(`migrate failed: Traceback (most recent call last):\n${SQLALCHEMY_TRACEBACK}`)).toBe(
      `migrate failed … ${EXCEPTION}`
    )
  })

  test('a traceback without SQLAlchemy (python3 -c with sqlite3)', () => {
    const text = [
      '`bin/migrate` failed on web-1 (exit 1): Traceback (most recent call last):',
      '  File "<string>", line 1, in <module>',
      "    import sqlite3; sqlite3.connect('app.db').execute('select * from userz')",
      'sqlite3.OperationalError: no such table: userz'
    ].join('\n')
    expect(oneLine(text)).toBe(
      '`bin/migrate` failed on web-1 (exit 1) … sqlite3.OperationalError: no such table: userz'
    )
  })

  test('a traceback in the logs of a log command (docker compose, podman, journalctl): its exception line', () => {
    const lines = [
      'Traceback (most recent call last):',
      '  File "/app/field_service/bots/master_bot/main.py", line 12, in <module>',
      "KeyError: 'MASTER_BOT_TOKEN'"
    ]
    const failed = 'verify command `docker compose ps` failed on fs (exit 1); last log lines on fs:'
    for (const prefix of ['master_bot-1  | ', '2b5a1d12fa09 ', 'Dec 01 13:00:00 fs bot[812]: ']) {
      const text = [failed, ...lines.map(l => `${prefix}${l}`), `${prefix}exiting`, 'exit code: 0'].join('\n')
      expect(oneLine(text)).toBe(`${failed} … ${prefix}KeyError: 'MASTER_BOT_TOKEN'`)
    }
  })

  test('other messages keep their first and last line', () => {
    expect(oneLine('one line')).toBe('one line')
    expect(oneLine('`bin/restart` failed on web-1 (exit 3): starting\nport 8080 in use\n')).toBe(
      '`bin/restart` failed on web-1 (exit 3): starting … port 8080 in use'
    )
    expect(oneLine('')).toBe('')
  })
})
