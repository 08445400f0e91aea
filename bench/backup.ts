/**
 * Backup overhead: safe-deploy's backup (dump, verify, sha256 manifest, fsync, rename; with and without
 * age) against a bare `pg_dump -Fc > file`, on the same PostgreSQL database, in the same process; and
 * gzip against zstd on a plain SQL dump, as MySQL backups compress.
 *
 *   npx tsx bench/backup.ts                 # BENCH_SCALE=70 (pgbench scale, about 1 GB), BENCH_RUNS=3
 *   BENCH_SCALE=5 npx tsx bench/backup.ts   # a quick run (about 75 MB)
 *   BENCH_SCALE=1 BENCH_RANDOM_MB=500 npx tsx bench/backup.ts   # incompressible data: the worst case
 *
 * Runs as root (PostgreSQL runs as the postgres OS user, like the e2e harness). Our backup runs through a
 * local host (no SSH), so the numbers compare the work on the host, not the network.
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, mkdirSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { ageKeyPair, PG_BIN, startPostgres } from '../__tests__/e2e/harness/db.js'
import { tempDir } from '../__tests__/e2e/harness/sshd.js'
import { validateConfig } from '../src/config/load.js'
import { newContext } from '../src/flows/deploy.js'
import { closeAll, connectAll, primaryOf } from '../src/host/context.js'
import { takeBackup } from '../src/backup/ops/take.js'
import type { Reporter } from '../src/report/log.js'
import { LocalTransport } from '../src/transport/local.js'
import { sh } from '../src/commands/quote.js'

const SCALE = Number(process.env.BENCH_SCALE ?? 70)
/** Also a table of this many MB of random bytes: the dump does not compress (the worst case for us). */
const RANDOM_MB = Number(process.env.BENCH_RANDOM_MB ?? 0)
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const PASSWORD = 'bench-pass-1'
const quiet: Reporter = {
  info() {},
  warn: l => console.error(l),
  error: l => console.error(l),
  startGroup() {},
  endGroup() {}
}

/**
 * Runs a shell command the way safe-deploy's local transport runs ours (async, its own process group):
 * both sides of the comparison start their processes alike. spawnSync in this process measured the bare
 * dump about twice as slow under load (another session and scheduling group than the transport's).
 */
async function shell(cmd: string, env: Record<string, string> = {}): Promise<void> {
  const exports = Object.entries(env)
    .map(([k, v]) => `export ${k}=${sh(v)}; `)
    .join('')
  const r = await new LocalTransport('bench').exec(`${exports}${cmd}`)
  if (r.code !== 0) throw new Error(`${cmd}: exit ${r.code}: ${r.stderr}`)
}

function run(cmd: string, env: NodeJS.ProcessEnv = {}): void {
  const r = spawnSync('/bin/sh', ['-c', cmd], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  if (r.status !== 0) throw new Error(`${cmd}: exit ${r.status}: ${r.stderr.toString()}`)
}

const time = async (fn: () => unknown | Promise<unknown>) => {
  const t0 = performance.now()
  await fn()
  return (performance.now() - t0) / 1000
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`
const sizeOf = (f: string) => statSync(f).size

async function main() {
  const pg = await startPostgres()
  const work = tempDir('safe-deploy-bench-backup-')
  try {
    pg.createDatabase('bench', 'bench_app', PASSWORD)
    const env = {
      PGHOST: '127.0.0.1',
      PGPORT: String(pg.port),
      PGUSER: 'bench_app',
      PGPASSWORD: PASSWORD,
      PGDATABASE: 'bench'
    }
    console.error(`pgbench -i -s ${SCALE} ...`)
    const init = await time(() => run(`${PG_BIN}/pgbench -i -q -s ${SCALE}`, env))
    if (RANDOM_MB > 0) {
      console.error(`${RANDOM_MB} MB of random bytes ...`)
      const file = join(work, 'blobs.copy')
      const fd = openSync(file, 'w')
      for (let i = 0; i < RANDOM_MB; i++)
        writeSync(fd, `${i}\t\\\\x${randomBytes(1 << 20).toString('hex')}\n`)
      closeSync(fd)
      pg.psql(
        `CREATE TABLE blobs (id int PRIMARY KEY, data bytea); ALTER TABLE blobs OWNER TO bench_app;\n\\copy blobs FROM '${file}'`,
        'bench'
      )
      rmSync(file)
    }
    const dbBytes = Number(pg.psql("SELECT pg_database_size('bench')").trim())
    console.error(`database: ${mb(dbBytes)} (made in ${init.toFixed(0)} s)`)

    const keys = ageKeyPair()
    const url = `postgres://bench_app:${PASSWORD}@127.0.0.1:${pg.port}/bench`
    const variant = (name: string, encrypt?: { recipients: string[]; identity?: string }) => {
      const root = join(work, name)
      mkdirSync(root, { recursive: true })
      const file = join(root, 'safe-deploy.yml')
      writeFileSync(file, '')
      const loaded = validateConfig(
        {
          app: 'bench',
          path: root,
          hosts: [{ local: true }],
          backup: { databases: [{ engine: 'postgres', url }], ...(encrypt ? { encrypt } : {}) }
        },
        file
      )
      return async () => {
        const ctx = newContext(
          { loaded, reporter: quiet, logDir: join(root, 'logs') },
          'bench',
          new Date(),
          false
        )
        await connectAll(ctx)
        try {
          const r = await takeBackup(ctx, primaryOf(ctx), { stage: 'bench', reason: 'bench' })
          return r.files.find(f => f.file.includes('.dump'))?.bytes ?? 0
        } finally {
          await closeAll(ctx)
          rmSync(join(root, 'backups'), { recursive: true, force: true })
        }
      }
    }
    const bareFile = join(work, 'bare.dump')
    const rows: [string, number[], number][] = []
    const bare: number[] = []
    let bareSize = 0
    const ours = { plain: [] as number[], age: [] as number[], ageId: [] as number[] }
    const oursSize = { plain: 0, age: 0, ageId: 0 }
    const plain = variant('plain')
    const age = variant('age', { recipients: [keys.recipient] })
    const ageId = variant('age-identity', { recipients: [keys.recipient], identity: keys.identity })
    // warm the page cache once, then alternate so drift hits every variant alike
    run(`${PG_BIN}/pg_dump -Fc > /dev/null`, env)
    const bareSynced: number[] = []
    // each timed run starts with nothing dirty in the page cache (an fsync also waits for other writes)
    const settle = () => shell('sync')
    const bareOnce = async () => {
      await settle()
      bare.push(await time(() => shell(`${PG_BIN}/pg_dump -Fc > '${bareFile}'`, env)))
      bareSize = sizeOf(bareFile)
      rmSync(bareFile)
      await settle()
      bareSynced.push(
        await time(() => shell(`${PG_BIN}/pg_dump -Fc > '${bareFile}' && sync -- '${bareFile}'`, env))
      )
      rmSync(bareFile)
    }
    for (let i = 0; i < RUNS; i++) {
      // alternate the order, so a change in load does not always hit the same side
      if (i % 2 === 0) await bareOnce()
      for (const [k, fn] of [
        ['plain', plain],
        ['age', age],
        ['ageId', ageId]
      ] as const) {
        let bytes = 0
        await settle()
        ours[k].push(await time(async () => (bytes = await fn())))
        oursSize[k] = bytes
      }
      if (i % 2 === 1) await bareOnce()
      console.error(`run ${i + 1}/${RUNS} done`)
    }
    rows.push(['bare `pg_dump -Fc > file`', bare, bareSize])
    rows.push(['bare, then `sync -- file` (the fsync ours does)', bareSynced, bareSize])
    rows.push(['safe-deploy backup', ours.plain, oursSize.plain])
    rows.push(['safe-deploy backup, age (verified before encryption)', ours.age, oursSize.age])
    rows.push([
      'safe-deploy backup, age + identity (also decrypted and verified)',
      ours.ageId,
      oursSize.ageId
    ])

    // MySQL-style: a plain SQL dump through gzip or zstd
    const sql = join(work, 'dump.sql')
    run(`${PG_BIN}/pg_dump -Fp > '${sql}'`, env)
    const sqlBytes = sizeOf(sql)
    const comp: [string, number, number][] = []
    for (const [label, cmd, ext] of [
      ['gzip -c', 'gzip -c', 'gz'],
      ['zstd -q -c -T0', 'zstd -q -c -T0', 'zst']
    ] as const) {
      const out = `${sql}.${ext}`
      const ts: number[] = []
      for (let i = 0; i < RUNS; i++) ts.push(await time(() => shell(`${cmd} < '${sql}' > '${out}'`)))
      comp.push([label, median(ts), sizeOf(out)])
      rmSync(out)
    }

    const base = median(bare)
    const cpus = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()
    const load = spawnSync('cat', ['/proc/loadavg'], { encoding: 'utf8' })
      .stdout.split(' ')
      .slice(0, 3)
      .join(' ')
    console.log(
      `\nPostgreSQL 15, pgbench scale ${SCALE}${RANDOM_MB ? ` + ${RANDOM_MB} MB of random bytea` : ''}: database ${mb(dbBytes)}; ${RUNS} runs each, median; ${cpus} CPUs, load ${load}\n`
    )
    console.log('| backup | median | runs | dump size | vs bare pg_dump |')
    console.log('| --- | --- | --- | --- | --- |')
    for (const [label, ts, bytes] of rows)
      console.log(
        `| ${label} | ${median(ts).toFixed(1)} s | ${ts.map(t => t.toFixed(1)).join(', ')} | ${mb(bytes)} | ${(median(ts) / base).toFixed(2)}x |`
      )
    console.log(`\nplain SQL dump (${mb(sqlBytes)}), compression only, median of ${RUNS}:\n`)
    console.log('| compressor | time | size | ratio |')
    console.log('| --- | --- | --- | --- |')
    for (const [label, t, bytes] of comp)
      console.log(`| ${label} | ${t.toFixed(1)} s | ${mb(bytes)} | ${(sqlBytes / bytes).toFixed(1)}:1 |`)
  } finally {
    await pg.stop()
    rmSync(work, { recursive: true, force: true })
  }
}

main().catch(e => {
  console.error(e)
  process.exit(1)
})
