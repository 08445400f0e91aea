import { sh } from '../commands/quote.js'
import type { Connection } from './connection.js'
import { describeDatabase, validateServerDatabase, type BackupEngine } from './engine.js'
import { runIn, type EnvPair, type Target, type Tools } from './target.js'

/**
 * MySQL and MariaDB: a consistent dump of one database (`--single-transaction --routines --triggers
 * --events`), compressed on the host, checked by decompressing it to the `-- Dump completed` line that
 * mysqldump writes last, restored through the client. The password travels as MYSQL_PWD, read by both
 * MySQL and MariaDB clients, from a script variable.
 */
function myEnv(t: Target): EnvPair[] {
  return t.passwordVar ? [['MYSQL_PWD', { variable: t.passwordVar }]] : []
}

/** `-h HOST -P PORT -u USER --ssl-ca=...`: nothing secret. */
function myConnArgs(t: Target): string {
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

function myTablesQuery(t: Target, client: string): string {
  return query(t, client, TABLES_QUERY)
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

/** Query parameters of SQLAlchemy MySQL URLs that the mysql client does not need (dumps are utf8mb4). */
const MYSQL_IGNORED = ['charset']

function urlParam(key: string, value: string, conn: Connection): string | undefined {
  if (MYSQL_IGNORED.includes(key)) return undefined
  if (!MYSQL_PARAMS.includes(key))
    return `unknown connection parameter ?${key}= (supported: ${MYSQL_PARAMS.join(', ')})`
  conn.params[key] = value
  return undefined
}

const describe = (t: Target) => describeDatabase('MySQL', t)

/** `mysqldump  Ver 10.19 Distrib 10.11.6-MariaDB` or `mysqldump  Ver 8.0.36`: major and minor. */
const clientVersionOf = (v: string) => /Distrib (\d+)\.(\d+)/.exec(v) ?? /Ver (\d+)\.(\d+)/.exec(v)

export const mysql: BackupEngine = {
  id: 'mysql',
  title: 'MySQL',
  ext: 'sql',
  compressible: true,
  // the client runs the dump statement by statement: a failure halfway leaves a half-restored database
  atomicRestore: false,
  defaultTools: { dump: 'mysqldump', client: 'mysql' },
  url: { schemes: ['mysql:', 'mariadb:'], param: urlParam },
  validate: validateServerDatabase,
  defaultLabel: (_db, connection) => connection()?.database,
  dump: (t, tools) => ({ label: `${tools.dump} of the ${describe(t)}`, cmd: myDump(t, tools) }),
  check: (_t, file, scratch) => ({
    label: `dump completeness check (${file})`,
    cmd: myCheck(`"${scratch}.check"`)
  }),
  tables: (file, scratch) => `sed -n ${sh(`s|^TABLE=|TABLE=${file} |p`)} "${scratch}.check"`,
  restore(t, tools, r) {
    r.run([...r.head, { label: `${tools.client} into the ${describe(t)}`, cmd: myRestore(t, tools) }], {
      from: r.from
    })
    r.line(`(${myTablesQuery(t, tools.client)}) 2>/dev/null | sed 's/^/DBTABLE=/'`)
  },
  probe(t, h) {
    const find = (kind: string, tools: string[]) =>
      `for x in ${tools.join(' ')}; do v=$(${runIn(t, [], '"$x" --version')} 2>&1) && { printf '${h.key(kind)}%s\\n${h.key('TOOL')}%s %s\\n' "$x" "$x" "$(printf '%s\\n' "$v" | head -n 1)"; break; }; done`
    return [
      'c=',
      find('DUMP', ['mariadb-dump', 'mysqldump']),
      find('CLIENT', ['mariadb', 'mysql']).replace('break;', 'c=$x; break;'),
      `if [ -n "$c" ]; then ${h.server(myServerQuery(t, '"$c"'))}; fi`
    ]
  },
  readProbe(_t, r, out) {
    const dump = r.kv.get('DUMP')?.[0]
    const clientTool = r.kv.get('CLIENT')?.[0]
    if (!dump)
      out.problem(
        `mysqldump not found ${r.where}: install mariadb-client (or mysql-client for a MySQL server)`
      )
    if (!clientTool)
      out.problem(
        `mysql client not found ${r.where}: install mariadb-client (or mysql-client for a MySQL server)`
      )
    if (dump && clientTool) out.tools({ dump, client: clientTool })
    if (!r.server || !dump) return
    const [version = '', size] = r.server.split('\t')
    out.size(Number(size))
    const clientVersion = r.tools.get(dump) ?? ''
    const serverMaria = /mariadb/i.test(version)
    const clientMaria = /mariadb/i.test(clientVersion)
    const cv = clientVersionOf(clientVersion)
    const sv = /^(\d+)\.(\d+)/.exec(version)
    if (cv && sv && serverMaria === clientMaria) {
      const older = Number(cv[1]) * 1000 + Number(cv[2]) < Number(sv[1]) * 1000 + Number(sv[2])
      if (older && Number(cv[1]) < Number(sv[1]))
        out.problem(
          `${dump} ${r.where} (${cv[1]}.${cv[2]}) is older than the ${r.what} server (${version}): install a client of version ${sv[1]} or newer`
        )
    } else if (sv && serverMaria !== clientMaria) {
      out.warn(
        `${dump} ${r.where} is a ${clientMaria ? 'MariaDB' : 'MySQL'} client and the server is ${version}; dumps usually work across them, restores are tested in docs/backups.md only for matching ones`
      )
    }
  }
}
