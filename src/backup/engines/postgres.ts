import { sh } from '../../commands/quote.js'
import { conninfoValue } from '../connection.js'
import { runIn, type EnvPair, type Target } from './target.js'

/**
 * PostgreSQL: `pg_dump -Fc` (custom format, compressed by pg_dump), checked with `pg_restore --list`,
 * restored with `pg_restore --clean --if-exists --single-transaction --no-owner` (all or nothing).
 * Every connection setting travels as a libpq environment variable; the password as PGPASSWORD from a
 * script variable, so neither the URL nor the password is ever on a command line.
 */
export function pgEnv(t: Target): EnvPair[] {
  const c = t.conn
  const env: EnvPair[] = []
  if (c.host !== undefined) env.push(['PGHOST', { literal: c.host }])
  if (c.port !== undefined) env.push(['PGPORT', { literal: String(c.port) }])
  if (c.user !== undefined) env.push(['PGUSER', { literal: c.user }])
  if (c.database !== undefined) env.push(['PGDATABASE', { literal: c.database }])
  for (const [k, v] of Object.entries(c.params)) env.push([k, { literal: v }])
  if (t.passwordVar) env.push(['PGPASSWORD', { variable: t.passwordVar }])
  return env
}

/** Writes the custom-format archive to stdout. --no-password: fail at once rather than wait for a prompt. */
export function pgDump(t: Target): string {
  return runIn(t, pgEnv(t), 'pg_dump -Fc --no-password')
}

/** Reads an archive on stdin; lists its table of contents to `toc` (a shell word), then drains stdin. */
export function pgCheck(t: Target, toc: string): string {
  return `${runIn(t, [], 'pg_restore --list')} >${toc} && cat >/dev/null`
}

/** Restores the archive on stdin into the database, in one transaction. */
export function pgRestore(t: Target): string {
  const db = `dbname=${conninfoValue(t.conn.database ?? '')}`
  return runIn(
    t,
    pgEnv(t),
    `pg_restore --clean --if-exists --single-transaction --no-owner --no-password -d ${sh(db)}`
  )
}

const SERVER_QUERY =
  "SELECT current_setting('server_version_num') || ' ' || pg_database_size(current_database())"
const TABLES_QUERY =
  "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"

function psql(t: Target, query: string): string {
  return runIn(t, pgEnv(t), `psql -X -A -t -w -c ${sh(query)}`)
}

/** Server version number and database size in bytes: `150018 7651235`. */
export function pgServerQuery(t: Target): string {
  return psql(t, SERVER_QUERY)
}

/** `schema.table` per line, for telling which tables a restore left alone. */
export function pgTablesQuery(t: Target): string {
  return psql(t, TABLES_QUERY)
}
