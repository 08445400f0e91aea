import type { DatabaseConfig } from './config.js'

/**
 * How to reach a database, from `url:` and/or the separate fields (a field wins over the URL). The
 * password is kept apart: it reaches the host only in the script's environment, over stdin.
 */
export interface Connection {
  host?: string
  port?: number
  user?: string
  password?: string
  database?: string
  /** Extra settings: libpq environment variables (PGSSLMODE=require) or mysql client options (ssl-ca). */
  params: Record<string, string>
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

/** mysql/mariadb client options a URL may set as `?ssl-ca=/path` (each becomes `--ssl-ca=/path`). */
const MYSQL_PARAMS = [
  'ssl',
  'ssl-ca',
  'ssl-capath',
  'ssl-cert',
  'ssl-key',
  'ssl-mode',
  'ssl-verify-server-cert',
  'socket',
  'protocol'
]

const SCHEMES: Record<'postgres' | 'mysql', string[]> = {
  postgres: ['postgres:', 'postgresql:'],
  mysql: ['mysql:', 'mariadb:']
}

/**
 * SQLAlchemy's `dialect+driver://` (`postgresql+psycopg2://`, `mysql+pymysql://`, the Python users'
 * DATABASE_URL): the driver says which Python module talks to the server, which does not matter to
 * pg_dump or mysqldump, so it is dropped. `postgresql+psycopg2:` -> `postgresql:`.
 */
function baseScheme(protocol: string): string {
  return protocol.replace(/^([a-z][a-z0-9]*)\+[a-z0-9_]+:$/i, '$1:').toLowerCase()
}

/** Query parameters of SQLAlchemy MySQL URLs that the mysql client does not need (dumps are utf8mb4). */
const MYSQL_IGNORED = ['charset']

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new Error(`the ${what} in the URL is not valid percent-encoding`)
  }
}

/**
 * Parses `postgres://user:p%40ss@host:5433/db?sslmode=require` or `mysql://user:pass@host:3306/db`, and
 * the same with a SQLAlchemy driver suffix (`postgresql+psycopg2://`, `mysql+pymysql://...?charset=utf8mb4`).
 * Errors never repeat the URL: it may hold a password.
 */
export function parseDatabaseUrl(url: string, engine: 'postgres' | 'mysql'): Connection {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new Error(`not a URL; expected ${engine}://user:password@host:port/database`)
  }
  if (!SCHEMES[engine].includes(baseScheme(u.protocol))) {
    throw new Error(
      `the URL scheme is ${u.protocol.replace(/:$/, '')}; for engine ${engine} use ${SCHEMES[engine].map(s => `${s}//`).join(' or ')}`
    )
  }
  const conn: Connection = { params: {} }
  const host = decode(u.hostname, 'host').replace(/^\[(.*)\]$/, '$1')
  if (host) conn.host = host
  if (u.port) conn.port = Number(u.port)
  if (u.username) conn.user = decode(u.username, 'user name')
  if (u.password) conn.password = decode(u.password, 'password')
  const path = decode(u.pathname.replace(/^\//, ''), 'database name')
  if (path.includes('/')) throw new Error('the URL path must be just the database name')
  if (path) conn.database = path
  for (const [key, value] of u.searchParams) {
    if (engine === 'postgres') {
      const env = LIBPQ_PARAMS[key]
      if (!env) throw new Error(`unknown connection parameter ?${key}= (libpq parameters only)`)
      if (key === 'host') conn.host = value
      else if (key === 'port') conn.port = Number(value)
      else if (key === 'user') conn.user = value
      else if (key === 'dbname') conn.database = value
      else conn.params[env] = value
    } else {
      if (MYSQL_IGNORED.includes(key)) continue
      if (!MYSQL_PARAMS.includes(key))
        throw new Error(`unknown connection parameter ?${key}= (supported: ${MYSQL_PARAMS.join(', ')})`)
      conn.params[key] = value
    }
  }
  if (conn.port !== undefined && !(Number.isInteger(conn.port) && conn.port > 0 && conn.port < 65536))
    throw new Error('the port in the URL is not a port number')
  return conn
}

/** The connection for one `backup.databases[]` entry: the URL, then the fields over it. */
export function resolveConnection(db: DatabaseConfig): Connection {
  const conn: Connection =
    db.url && db.engine !== 'sqlite' ? parseDatabaseUrl(db.url, db.engine) : { params: {} }
  if (db.host !== undefined) conn.host = db.host
  if (db.port !== undefined) conn.port = db.port
  if (db.user !== undefined) conn.user = db.user
  if (db.password !== undefined) conn.password = db.password
  if (db.database !== undefined) conn.database = db.database
  return conn
}

/**
 * The secrets in a database entry, for redaction: the password as given and, from a URL, the password
 * both decoded and as written (percent-encoded), and the URL itself.
 */
export function databaseSecrets(db: DatabaseConfig): string[] {
  const out: string[] = []
  if (db.password) out.push(db.password)
  if (db.url && db.engine !== 'sqlite') {
    out.push(db.url)
    try {
      const u = new URL(db.url)
      if (u.password) out.push(u.password, decodeURIComponent(u.password))
    } catch {
      /* reported by validation */
    }
  }
  return out
}

/** A libpq connection-string value: bare when plain, else single-quoted with \ and ' escaped. */
export function conninfoValue(v: string): string {
  return /^[A-Za-z0-9_.-]+$/.test(v) ? v : `'${v.replace(/[\\']/g, c => `\\${c}`)}'`
}
