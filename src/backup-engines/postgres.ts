import { sh } from '../commands/quote.js'
import type { Connection } from './connection.js'
import { describeDatabase, hostTarget, majorOf, validateServerDatabase, type BackupEngine } from './engine.js'
import { runIn, type EnvPair, type Target } from './target.js'

/**
 * PostgreSQL: `pg_dump -Fc` (custom format, compressed by pg_dump), checked with `pg_restore --list`,
 * restored with `pg_restore --clean --if-exists --single-transaction --no-owner` (all or nothing).
 * Every connection setting travels as a libpq environment variable; the password as PGPASSWORD from a
 * script variable, so neither the URL nor the password is ever on a command line.
 */
function pgEnv(t: Target): EnvPair[] {
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

/** A libpq connection-string value: bare when plain, else single-quoted with \\ and ' escaped. */
export function conninfoValue(v: string): string {
  return /^[A-Za-z0-9_.-]+$/.test(v) ? v : `'${v.replace(/[\\']/g, c => `\\${c}`)}'`
}

/** URL query parameters libpq understands, and the environment variable that carries each. */
const LIBPQ_PARAMS: Record<string, string> = {
  host: 'PGHOST',
  hostaddr: 'PGHOSTADDR',
  port: 'PGPORT',
  dbname: 'PGDATABASE',
  user: 'PGUSER',
  passfile: 'PGPASSFILE',
  service: 'PGSERVICE',
  options: 'PGOPTIONS',
  application_name: 'PGAPPNAME',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  sslmode: 'PGSSLMODE',
  sslrootcert: 'PGSSLROOTCERT',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  sslcrl: 'PGSSLCRL',
  sslsni: 'PGSSLSNI',
  channel_binding: 'PGCHANNELBINDING',
  gssencmode: 'PGGSSENCMODE',
  krbsrvname: 'PGKRBSRVNAME',
  target_session_attrs: 'PGTARGETSESSIONATTRS'
}

function urlParam(key: string, value: string, conn: Connection): string | undefined {
  const env = LIBPQ_PARAMS[key]
  if (!env) return `unknown connection parameter ?${key}= (libpq parameters only)`
  if (key === 'host') conn.host = value
  else if (key === 'port') conn.port = Number(value)
  else if (key === 'user') conn.user = value
  else if (key === 'dbname') conn.database = value
  else conn.params[env] = value
  return undefined
}

const describe = (t: Target) => describeDatabase('PostgreSQL', t)

const pgDumpVersion = (v: string) => majorOf(v.replace(/^pg_dump \(PostgreSQL\) /, ''))

export const postgres: BackupEngine = {
  id: 'postgres',
  title: 'PostgreSQL',
  ext: 'dump',
  compressible: false,
  atomicRestore: true,
  defaultTools: { dump: 'pg_dump', client: 'psql' },
  url: { schemes: ['postgres:', 'postgresql:'], param: urlParam },
  validate: validateServerDatabase,
  defaultLabel: (_db, connection) => connection()?.database,
  dump: t => ({ label: `pg_dump of the ${describe(t)}`, cmd: pgDump(t) }),
  check: (t, file, scratch) => ({
    label: `pg_restore --list (${file})`,
    cmd: pgCheck(t ?? hostTarget('postgres'), `"${scratch}.toc"`)
  }),
  tables: (file, scratch) =>
    `sed -n 's/^[0-9]*; 1259 [0-9]* TABLE \\([^ ]*\\) \\(.*\\) [^ ]*$/\\1.\\2/p' "${scratch}.toc" | sed ${sh(`s|^|TABLE=${file} |`)}`,
  restore(t, _tools, r) {
    r.run([...r.head, { label: `pg_restore into the ${describe(t)}`, cmd: pgRestore(t) }], { from: r.from })
    r.line(`(${pgTablesQuery(t)}) 2>/dev/null | sed 's/^/DBTABLE=/'`)
  },
  probe(t, h) {
    // on the host, presence is a shell builtin away; only pg_dump's version matters (vs the server's)
    const present = (tool: string) =>
      t.container ? h.version(tool) : `command -v ${tool} >/dev/null 2>&1 || echo ${h.key('MISSING')}${tool}`
    return [h.version('pg_dump'), present('pg_restore'), present('psql'), h.server(pgServerQuery(t))]
  },
  readProbe(_t, r, out) {
    const serverMajor = r.server ? Math.floor(Number(r.server.split(' ')[0]) / 10000) : undefined
    const clientPkg = `postgresql-client${serverMajor ? `-${serverMajor}` : ''}`
    for (const tool of r.missing)
      out.problem(
        `${tool} not found ${r.where}: install ${clientPkg}${serverMajor ? '' : ' (the major version of your server, or newer)'}`
      )
    const client = r.tools.get('pg_dump')
    if (client && serverMajor && pgDumpVersion(client) < serverMajor)
      out.problem(
        `pg_dump ${r.where} is version ${pgDumpVersion(client)}, older than the PostgreSQL ${serverMajor} server of the ${r.what}: install postgresql-client-${serverMajor}`
      )
    if (r.server) out.size(Number(r.server.split(' ')[1]))
  }
}
