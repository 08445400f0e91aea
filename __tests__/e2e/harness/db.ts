/**
 * Real database servers for the e2e tests, from the Debian packages, each in its own temp dir on a free
 * port of 127.0.0.1: PostgreSQL 15 (initdb + pg_ctl as the `postgres` OS user; TCP logins need a password,
 * so PGPASSWORD handling is real) and MariaDB (mariadb-install-db + mariadbd). A detached watchdog stops
 * each server when the test process dies without calling stop().
 */
import { spawn, spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { freePort, tempDir } from './sshd.js'

export const PG_BIN = '/usr/lib/postgresql/15/bin'
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

function sh(cmd: string, args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(cmd, args, {
    input: typeof opts.input === 'string' ? Buffer.from(opts.input) : opts.input,
    env: opts.env ?? process.env,
    maxBuffer: 512 * 1024 * 1024
  })
  if (r.error || r.status !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`}): ${r.stderr.toString()}`
    )
  }
  return r.stdout
}

function watchdog(stop: string): void {
  const child = spawn(
    '/bin/sh',
    ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ${stop}`],
    {
      detached: true,
      stdio: 'ignore'
    }
  )
  child.unref()
}

/** `'it''s'`: a SQL string literal. */
export const lit = (s: string) => `'${s.replace(/'/g, "''")}'`

export interface PgServer {
  port: number
  socketDir: string
  dataDir: string
  logFile: string
  /** psql as the superuser over the socket; returns stdout (-A -t: unaligned, tuples only). */
  psql(sql: string, db?: string): string
  /** Creates a role with a password and a database it owns. */
  createDatabase(db: string, user: string, password: string): void
  /** Every row of a table, in id order, as COPY text: compare by hash. */
  tableHash(db: string, table: string): string
  stop(): Promise<void>
}

export async function startPostgres(): Promise<PgServer> {
  if (!existsSync(`${PG_BIN}/initdb`))
    throw new Error(`${PG_BIN}/initdb is missing; the jest globalSetup should have installed postgresql`)
  const dir = tempDir('safe-deploy-e2e-pg-')
  const pgUser = 'postgres'
  const uid = Number(sh('id', ['-u', pgUser]).toString())
  const gid = Number(sh('id', ['-g', pgUser]).toString())
  chownSync(dir, uid, gid)
  const dataDir = join(dir, 'data')
  const socketDir = join(dir, 'sock')
  mkdirSync(socketDir)
  chownSync(socketDir, uid, gid)
  const logFile = join(dir, 'postgres.log')
  const port = await freePort()
  const asPg = (cmd: string, args: string[]) => sh('runuser', ['-u', pgUser, '--', cmd, ...args])
  asPg(`${PG_BIN}/initdb`, ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C.UTF-8'])
  // the superuser over the socket without a password; every TCP login (the app's) needs one
  writeFileSync(
    join(dataDir, 'pg_hba.conf'),
    'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n'
  )
  asPg(`${PG_BIN}/pg_ctl`, [
    '-D',
    dataDir,
    '-o',
    `-p ${port} -k ${socketDir} -c listen_addresses=127.0.0.1`,
    '-l',
    logFile,
    '-w',
    'start'
  ])
  watchdog(`runuser -u ${pgUser} -- ${PG_BIN}/pg_ctl -D '${dataDir}' -m immediate stop`)
  const psqlArgs = (db: string) => [
    '-X',
    '-q',
    '-A',
    '-t',
    '-v',
    'ON_ERROR_STOP=1',
    '-h',
    socketDir,
    '-p',
    String(port),
    '-U',
    'postgres',
    '-d',
    db
  ]
  let stopped = false
  const server: PgServer = {
    port,
    socketDir,
    dataDir,
    logFile,
    psql: (sql, db = 'postgres') => sh(`${PG_BIN}/psql`, psqlArgs(db), { input: sql }).toString(),
    createDatabase(db, user, password) {
      server.psql(
        `CREATE ROLE "${user}" LOGIN PASSWORD ${lit(password)}; CREATE DATABASE "${db}" OWNER "${user}";`
      )
    },
    tableHash(db, table) {
      const out = sh(`${PG_BIN}/psql`, [
        ...psqlArgs(db),
        '-c',
        `COPY (SELECT * FROM ${table} ORDER BY id) TO STDOUT`
      ])
      return createHash('sha256').update(out).digest('hex')
    },
    async stop() {
      if (stopped) return
      stopped = true
      asPg(`${PG_BIN}/pg_ctl`, ['-D', dataDir, '-m', 'fast', '-w', 'stop'])
    }
  }
  return server
}

export interface MariaServer {
  port: number
  socket: string
  dir: string
  /** mariadb as root over the socket, batch mode: tab-separated rows. */
  sql(sql: string, db?: string): string
  createDatabase(db: string, user: string, password: string): void
  tableHash(db: string, table: string, columns: string): string
  stop(): Promise<void>
}

export async function startMariadb(): Promise<MariaServer> {
  if (!existsSync('/usr/sbin/mariadbd'))
    throw new Error(
      '/usr/sbin/mariadbd is missing; the jest globalSetup should have installed mariadb-server'
    )
  const dir = tempDir('safe-deploy-e2e-maria-')
  const dataDir = join(dir, 'data')
  const socket = join(dir, 'mysqld.sock')
  const pidFile = join(dir, 'mysqld.pid')
  const errLog = join(dir, 'error.log')
  const port = await freePort()
  sh('mariadb-install-db', ['--no-defaults', `--datadir=${dataDir}`, '--user=root', '--skip-test-db'])
  const child = spawn(
    '/usr/sbin/mariadbd',
    [
      '--no-defaults',
      `--datadir=${dataDir}`,
      `--socket=${socket}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      '--user=root',
      `--pid-file=${pidFile}`,
      `--log-error=${errLog}`,
      '--skip-name-resolve',
      '--innodb-buffer-pool-size=64M',
      '--max-allowed-packet=64M'
    ],
    { detached: true, stdio: 'ignore' }
  )
  child.unref()
  const pid = child.pid ?? 0
  watchdog(`kill -TERM ${pid} 2>/dev/null`)
  const deadline = Date.now() + 30_000
  const cli = (db?: string) => ['--no-defaults', '-S', socket, '-uroot', '-N', '-B', ...(db ? [db] : [])]
  for (;;) {
    const r = spawnSync('mariadb', [...cli(), '-e', 'SELECT 1'], { encoding: 'utf8' })
    if (r.status === 0) break
    if (Date.now() > deadline) {
      const log = existsSync(errLog) ? readFileSync(errLog, 'utf8').slice(-2000) : '(no log)'
      throw new Error(`mariadbd did not start on port ${port} within 30 s: ${r.stderr}\n${log}`)
    }
    await sleep(200)
  }
  let stopped = false
  const server: MariaServer = {
    port,
    socket,
    dir,
    sql: (sql, db) =>
      sh('mariadb', [...cli(db), '--default-character-set=utf8mb4'], { input: sql }).toString(),
    createDatabase(db, user, password) {
      server.sql(
        [
          `CREATE DATABASE \`${db}\` CHARACTER SET utf8mb4;`,
          ...['127.0.0.1', 'localhost'].map(
            h => `CREATE USER '${user}'@'${h}' IDENTIFIED BY ${lit(password).replace(/\\/g, '\\\\')};`
          ),
          ...['127.0.0.1', 'localhost'].map(h => `GRANT ALL ON \`${db}\`.* TO '${user}'@'${h}';`)
        ].join('\n')
      )
    },
    tableHash(db, table, columns) {
      const out = server.sql(`SELECT ${columns} FROM ${table} ORDER BY id`, db)
      return createHash('sha256').update(out).digest('hex')
    },
    async stop() {
      if (stopped) return
      stopped = true
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        return
      }
      const until = Date.now() + 30_000
      while (Date.now() < until) {
        try {
          process.kill(pid, 0)
        } catch {
          return
        }
        const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : ''
        if (!stat || / Z /.test(stat.slice(stat.lastIndexOf(')')))) return
        await sleep(100)
      }
      process.kill(pid, 'SIGKILL')
    }
  }
  return server
}

/** An age key pair made with age-keygen: the identity (secret, with its comment lines) and the recipient. */
export function ageKeyPair(): { identity: string; recipient: string } {
  const dir = tempDir('safe-deploy-e2e-age-')
  const file = join(dir, 'key.txt')
  sh('age-keygen', ['-o', file])
  return { identity: readFileSync(file, 'utf8'), recipient: sh('age-keygen', ['-y', file]).toString().trim() }
}

/**
 * Every process's command line, read from /proc: for checking that no secret ever reaches argv. Returns
 * the distinct command lines seen (NULs as spaces).
 */
export function commandLines(): string[] {
  const out: string[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const raw = readFileSync(`/proc/${entry}/cmdline`)
      if (raw.length) out.push(raw.toString('utf8').replace(/\0/g, ' ').trim())
    } catch {
      /* gone */
    }
  }
  return out
}

/** Samples every process's argv every `ms` until stop() is called; `seen` collects distinct lines. */
export function watchArgv(ms = 5): { seen: Set<string>; stop: () => void } {
  const seen = new Set<string>()
  const timer = setInterval(() => {
    for (const l of commandLines()) seen.add(l)
  }, ms)
  return { seen, stop: () => clearInterval(timer) }
}
