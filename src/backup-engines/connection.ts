import type { DatabaseConfig } from './config.js'
import { engineOf, type EngineId } from './index.js'

export { conninfoValue } from './postgres.js'

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

/**
 * SQLAlchemy's `dialect+driver://` (`postgresql+psycopg2://`, `mysql+pymysql://`, the Python users'
 * DATABASE_URL): the driver says which Python module talks to the server, which does not matter to
 * pg_dump or mysqldump, so it is dropped. `postgresql+psycopg2:` -> `postgresql:`.
 */
function baseScheme(protocol: string): string {
  return protocol.replace(/^([a-z][a-z0-9]*)\+[a-z0-9_]+:$/i, '$1:').toLowerCase()
}

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
export function parseDatabaseUrl(url: string, engine: EngineId): Connection {
  const spec = engineOf(engine).url
  if (!spec) throw new Error(`engine ${engine} takes no URL`)
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new Error(`not a URL; expected ${engine}://user:password@host:port/database`)
  }
  if (!spec.schemes.includes(baseScheme(u.protocol))) {
    throw new Error(
      `the URL scheme is ${u.protocol.replace(/:$/, '')}; for engine ${engine} use ${spec.schemes.map(s => `${s}//`).join(' or ')}`
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
    const problem = spec.param(key, value, conn)
    if (problem) throw new Error(problem)
  }
  if (conn.port !== undefined && !(Number.isInteger(conn.port) && conn.port > 0 && conn.port < 65536))
    throw new Error('the port in the URL is not a port number')
  return conn
}

/** The connection for one `backup.databases[]` entry: the URL, then the fields over it. */
export function resolveConnection(db: DatabaseConfig): Connection {
  const conn: Connection =
    db.url && engineOf(db.engine).url ? parseDatabaseUrl(db.url, db.engine) : { params: {} }
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
  if (db.url && engineOf(db.engine).url) {
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
