import { sh } from '../../commands/quote.js'
import { runIn, type EnvPair, type Target, type Tools } from './target.js'

/**
 * MySQL and MariaDB: a consistent dump of one database (`--single-transaction --routines --triggers
 * --events`), compressed on the host, checked by decompressing it to the `-- Dump completed` line that
 * mysqldump writes last, restored through the client. The password travels as MYSQL_PWD, read by both
 * MySQL and MariaDB clients, from a script variable.
 */
export function myEnv(t: Target): EnvPair[] {
  return t.passwordVar ? [['MYSQL_PWD', { variable: t.passwordVar }]] : []
}

/** `-h HOST -P PORT -u USER --ssl-ca=...`: nothing secret. */
export function myConnArgs(t: Target): string {
  const c = t.conn
  const args: string[] = []
  if (c.host !== undefined) args.push(`-h ${sh(c.host)}`)
  if (c.port !== undefined) args.push(`-P ${c.port}`)
  if (c.user !== undefined) args.push(`-u ${sh(c.user)}`)
  for (const [k, v] of Object.entries(c.params)) args.push(sh(`--${k}=${v}`))
  return args.join(' ')
}

const DUMP_OPTIONS =
  '--single-transaction --routines --triggers --events --hex-blob --no-tablespaces --default-character-set=utf8mb4'

function withConn(t: Target, program: string, rest: string): string {
  const conn = myConnArgs(t)
  return `${program}${conn ? ` ${conn}` : ''} ${rest}`
}

export function myDump(t: Target, tools: Tools): string {
  return runIn(t, myEnv(t), withConn(t, tools.dump, `${DUMP_OPTIONS} -- ${sh(t.conn.database ?? '')}`))
}

/**
 * Reads the decompressed dump on stdin: the names of its tables go to `out` as `TABLE=name` lines, and
 * it passes only when the last line is mysqldump's `-- Dump completed` (a cut-off dump has none).
 */
export function myCheck(out: string): string {
  return (
    "LC_ALL=C sed -n -e 's/^CREATE TABLE `\\(.*\\)` (.*/TABLE=\\1/p' -e '$s/^-- Dump completed.*/COMPLETE/p' " +
    `>${out} && grep -qx COMPLETE ${out}`
  )
}

/** Feeds the dump on stdin to the client. */
export function myRestore(t: Target, tools: Tools): string {
  return runIn(t, myEnv(t), withConn(t, tools.client, `-- ${sh(t.conn.database ?? '')}`))
}

function query(t: Target, client: string, q: string): string {
  return runIn(t, myEnv(t), withConn(t, client, `-N -B -e ${sh(q)} -- ${sh(t.conn.database ?? '')}`))
}

const SERVER_QUERY =
  'SELECT VERSION(), COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = DATABASE()'
const TABLES_QUERY =
  "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY 1"

/** `10.11.19-MariaDB-0+deb12u1<TAB>4980736`. */
export function myServerQuery(t: Target, client: string): string {
  return query(t, client, SERVER_QUERY)
}

export function myTablesQuery(t: Target, client: string): string {
  return query(t, client, TABLES_QUERY)
}
