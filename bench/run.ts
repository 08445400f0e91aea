/**
 * `npm run bench` (not a test): one run, one table of ratios, written to bench/RESULTS.md.
 *
 * Starts its own sshd on loopback (root's ~/.bashrc is skipped in its sessions: `fastShell()`, a clean
 * shell, so no slow profile is timed). The reference app is the e2e fixture (__tests__/e2e/harness/app.ts)
 * plus BENCH_FILES generated files (default 2,000, about 5 MB). Every tool gets the same restart
 * (`bin/restart`) and the same health check (GET /health, every 100 ms, from the runner). Median of
 * BENCH_RUNS (default 5). Rows:
 *   - deploy 1 host: safe-deploy (tar), Capistrano 3 stock (git strategy), Capistrano with TCP_NODELAY
 *     (Socket.tcp patched in the Capfile), an `rsync -a --delete` + `ssh bin/restart` script;
 *   - redeploy of 1 changed file: bytes and time, tar against incremental;
 *   - rollback; cold start (`safe-deploy --version`, `safe-deploy plan`);
 *   - the SSH round trips of one deploy (commands the log names with --verbose, plus the upload).
 * BENCH_CAPISTRANO=0 skips Capistrano; `cap` comes from Debian's `capistrano` package, rsync from `rsync`.
 */
import { spawn, spawnSync } from 'node:child_process'
import { cpus } from 'node:os'
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import {
  fastShell,
  freePort,
  startSshd,
  stopAll,
  tempDir,
  type SshHost
} from '../__tests__/e2e/harness/sshd.js'
import { httpGet, stopApp, writeApp } from '../__tests__/e2e/harness/app.js'
import { project, q, type Project } from '../__tests__/e2e/support.js'
import { writeCapistrano } from './capistrano.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const FILES = Number(process.env.BENCH_FILES ?? 2000)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
const repoRoot = join(import.meta.dirname, '..')
const cli = join(repoRoot, 'dist', 'cli.js')

function sh(
  cmd: string,
  args: string[],
  cwd?: string,
  env?: NodeJS.ProcessEnv
): Promise<{ code: number; out: string }> {
  return new Promise(resolve => {
    const c = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    c.stdout.on('data', (d: Buffer) => (out += d.toString()))
    c.stderr.on('data', (d: Buffer) => (out += d.toString()))
    c.on('close', code => resolve({ code: code ?? 1, out }))
  })
}

async function must(cmd: string, args: string[], cwd?: string): Promise<string> {
  const r = await sh(cmd, args, cwd)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.out.slice(-3000)}`)
  return r.out
}

/** Polls GET /health every 100 ms until it answers `ok <version>` (what safe-deploy's verify does here). */
async function healthy(port: number, version: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const a = await httpGet(`http://127.0.0.1:${port}/health`, 2000)
    if (a.status === 200 && a.body.trim() === `ok ${version}`) return
    await new Promise(r => setTimeout(r, 100))
  }
  throw new Error(`port ${port} never answered ok ${version}`)
}

/** The reference app: the fixture plus FILES generated files (text, some of it random). */
function writeReference(dir: string, version: string): void {
  writeApp(dir, { version })
  if (existsSync(join(dir, 'lib'))) return
  for (let i = 0; i < FILES; i++) {
    const sub = join(dir, 'lib', `m${i % 50}`)
    mkdirSync(sub, { recursive: true })
    const body = `// module ${i}\n${randomBytes(1000).toString('base64')}\n${'export const x = 1\n'.repeat(80)}`
    writeFileSync(join(sub, `f${i}.js`), body)
  }
}

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await f()
  return performance.now() - t0
}

const out = (r: { code: number; stderr: string; stdout: string }, what: string) => {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${r.stderr.slice(-3000)}`)
  return r.stderr + r.stdout
}

async function safeDeploy(host: SshHost, strategy: 'tar' | 'incremental') {
  const root = host.root(`sd-${strategy}`)
  const p: Project = await project({
    hosts: [host],
    root,
    config: base => ({
      ...base,
      upload: { strategy },
      stages: { restart: 'bin/restart' },
      verify: {
        http: { url: (base.verify as { http: { url: string } }).http.url, retries: 100, interval: '100ms' }
      }
    })
  })
  return { p, root }
}

function capistrano(host: SshHost, port: number, nodelay: boolean) {
  const root = host.root(nodelay ? 'cap-nodelay' : 'cap')
  const dir = tempDir('safe-deploy-bench-cap-')
  const repo = join(dir, 'repo')
  mkdirSync(repo)
  spawnSync('git', ['init', '-q', '-b', 'main'], { cwd: repo })
  const capDir = join(dir, 'cap')
  writeCapistrano({
    capDir,
    repo,
    root,
    host,
    application: 'ref',
    nodelay,
    env: { port: String(port), pid_file: `${root}/shared/app.pid` }
  })
  return {
    root,
    async deploy(version: string) {
      writeReference(repo, version)
      await must('git', ['add', '-A'], repo)
      await must('git', ['-c', 'user.name=b', '-c', 'user.email=b@b', 'commit', '-q', '-m', version], repo)
      await must('cap', ['production', 'deploy'], capDir)
      await healthy(port, version)
    }
  }
}

function rsyncScript(host: SshHost, port: number) {
  const root = host.root('rsync')
  host.run(`mkdir -p ${q(root)}`)
  const src = join(tempDir('safe-deploy-bench-rsync-'), 'app')
  let stamp = Math.floor(Date.now() / 1000)
  const ssh = `ssh -i ${q(host.privateKeyFile)} -p ${host.port} -o UserKnownHostsFile=${q(host.knownHostsFile)} -o BatchMode=yes -o IdentitiesOnly=yes`
  return {
    root,
    async deploy(version: string) {
      writeReference(src, version)
      // rsync's quick check skips a file of the same size and mtime (whole seconds): VERSION and server.js
      // keep their size from one version to the next, and two deploys can fall in the same second
      stamp += 2
      for (const f of readdirSync(src, { recursive: true, encoding: 'utf8' }))
        if (!f.startsWith('lib')) utimesSync(join(src, f), stamp, stamp)
      await must('rsync', ['-a', '--delete', '-e', ssh, `${src}/`, `root@${host.address}:${root}/app/`])
      await must('sh', [
        '-c',
        `${ssh} root@${host.address} ${q(`cd ${q(`${root}/app`)} && PORT=${port} PID_FILE=${q(`${root}/app.pid`)} APP_LOG=${q(`${root}/app.log`)} sh bin/restart`)}`
      ])
      await healthy(port, version)
    }
  }
}

const host = await startSshd({ extraConfig: fastShell() })
const rows: string[][] = []
/** The per-stage times a run prints at its end, for the profile under the table. */
const profiles: [string, string][] = []
const stageTable = (text: string) =>
  text
    .split('\n')
    .filter(l => /^ {2}\S.*\s\d+\.\d s/.test(l) && !l.includes('['))
    .join('\n')
const notes: string[] = []
const cleanups: (() => Promise<void>)[] = []
try {
  // safe-deploy, tar: RUNS deploys, each a new version
  const tar = await safeDeploy(host, 'tar')
  cleanups.push(() => stopApp(join(tar.root, 'shared', 'app.pid')))
  writeReference(join(tar.p.dir, 'app'), '0.0.0')
  out(await tar.p.deploy(), 'warm-up deploy')
  const sdDeploy: number[] = []
  let fullKiB = 0
  let verbose = ''
  for (let i = 1; i <= RUNS; i++) {
    tar.p.app({ version: `1.0.${i}` })
    const t0 = performance.now()
    // a process of its own, as `cap` and the rsync script are: node's start is in the time
    const args = [cli, 'deploy', '--config', tar.p.configFile, ...(i === RUNS ? ['--verbose'] : [])]
    const r = await sh(process.execPath, args, tar.p.dir, tar.p.env)
    const text = out({ code: r.code, stderr: r.out, stdout: '' }, 'deploy')
    sdDeploy.push(performance.now() - t0)
    fullKiB = Number(/packed .* \(([\d.]+) KiB compressed\)/.exec(text)?.[1] ?? 0)
    if (i === RUNS) verbose = text
    if (i === RUNS) profiles.push(['a deploy (`node dist/cli.js deploy`)', stageTable(text)])
  }
  // every command over SSH is logged as `$ <label>` with --verbose (user commands such as bin/restart too)
  const trips = verbose.split('\n').filter(l => /\] \$ /.test(l))
  const tripLabels = trips.map(l => l.replace(/^.*\] \$ /, '').trim())
  // rollback
  const rollbacks: number[] = []
  for (let i = 0; i < RUNS; i++) {
    rollbacks.push(await timed(async () => out(await tar.p.run(['rollback']), 'rollback')))
    tar.p.app({ version: `1.1.${i}` })
    out(await tar.p.deploy(), 'deploy after rollback')
  }
  // 1-file redeploy: tar against incremental
  const inc = await safeDeploy(host, 'incremental')
  cleanups.push(() => stopApp(join(inc.root, 'shared', 'app.pid')))
  writeReference(join(inc.p.dir, 'app'), '0.0.0')
  out(await inc.p.deploy(), 'incremental warm-up')
  const tarRedeploy: number[] = []
  const incRedeploy: number[] = []
  let incKiB = 0

  for (let i = 0; i < RUNS; i++) {
    for (const [x, times] of [
      [tar, tarRedeploy],
      [inc, incRedeploy]
    ] as const) {
      writeFileSync(join(x.p.dir, 'app', 'lib', 'm1', 'f1.js'), `// change ${i}\n`)
      const t0 = performance.now()
      const text = out(await x.p.deploy(), 'redeploy')
      times.push(performance.now() - t0)
      if (i === RUNS - 1)
        profiles.push([`a 1-file redeploy, ${x === inc ? 'incremental' : 'tar'}`, stageTable(text)])
      if (x === inc) {
        incKiB = Number(/sent \d+ files, ([\d.]+) KiB/.exec(text)?.[1] ?? 0)
      }
    }
  }
  const incFullKiB = fullKiB
  // the other tools
  const others: { name: string; times: number[] }[] = []
  const wantCap = process.env.BENCH_CAPISTRANO !== '0' && existsSync('/usr/bin/cap')
  if (!wantCap) notes.push('Capistrano rows left out: `cap` is not installed (apt-get install capistrano).')
  const tools: { name: string; deploy: (v: string) => Promise<void>; pid: string }[] = []
  if (wantCap) {
    const v = /Capistrano Version: (\S+)/.exec((await sh('cap', ['--version'])).out)?.[1]
    const capVersion = `Capistrano ${v ?? '3'}`
    const p1 = await freePort()
    const c1 = capistrano(host, p1, false)
    tools.push({ name: `${capVersion} stock`, deploy: c1.deploy, pid: join(c1.root, 'shared', 'app.pid') })
    const p2 = await freePort()
    const c2 = capistrano(host, p2, true)
    tools.push({
      name: `${capVersion}, TCP_NODELAY`,
      deploy: c2.deploy,
      pid: join(c2.root, 'shared', 'app.pid')
    })
  }
  if (existsSync('/usr/bin/rsync')) {
    const p3 = await freePort()
    const r = rsyncScript(host, p3)
    tools.push({ name: 'rsync -a --delete + ssh restart', deploy: r.deploy, pid: join(r.root, 'app.pid') })
  } else notes.push('rsync row left out: rsync is not installed (apt-get install rsync).')
  for (const t of tools) {
    cleanups.push(() => stopApp(t.pid))
    await t.deploy('0.0.0')
    const times: number[] = []
    for (let i = 1; i <= RUNS; i++) times.push(await timed(() => t.deploy(`1.0.${i}`)))
    others.push({ name: t.name, times })
  }
  // cold start
  const cold = async (args: string[]) => {
    const xs: number[] = []
    for (let i = 0; i < RUNS; i++)
      xs.push(
        await timed(async () => {
          const r = await sh(process.execPath, [cli, ...args], tar.p.dir, tar.p.env)
          if (r.code !== 0)
            throw new Error(`safe-deploy ${args.join(' ')} exited ${r.code}: ${r.out.slice(-2000)}`)
        })
      )
    return xs
  }
  const bare: number[] = []
  for (let i = 0; i < RUNS; i++) bare.push(await timed(() => must(process.execPath, ['-e', ''])))
  const version = await cold(['--version'])
  const plan = await cold(['plan', '--config', tar.p.configFile])

  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`
  const sd = median(sdDeploy)
  rows.push([
    'deploy 1 host: safe-deploy (tar), `node dist/cli.js deploy`',
    s(sd),
    '1.00×',
    sdDeploy.map(s).join(', ')
  ])
  for (const o of others)
    rows.push([
      `deploy 1 host: ${o.name}`,
      s(median(o.times)),
      `${(sd / median(o.times)).toFixed(2)}× (safe-deploy / this)`,
      o.times.map(s).join(', ')
    ])
  rows.push([
    'redeploy 1 changed file: tar',
    `${s(median(tarRedeploy))}, ${incFullKiB.toFixed(0)} KiB sent`,
    '',
    tarRedeploy.map(s).join(', ')
  ])
  rows.push([
    'redeploy 1 changed file: incremental',
    `${s(median(incRedeploy))}, ${incKiB.toFixed(1)} KiB sent`,
    `${((100 * incKiB) / incFullKiB).toFixed(2)} % of the bytes, ${(median(incRedeploy) / median(tarRedeploy)).toFixed(2)}× the time`,
    incRedeploy.map(s).join(', ')
  ])
  rows.push(['rollback (switch, restart, verify)', s(median(rollbacks)), '', rollbacks.map(s).join(', ')])
  rows.push(['cold start: bare `node -e ""` (the floor)', s(median(bare)), '', bare.map(s).join(', ')])
  rows.push(['cold start: safe-deploy --version', s(median(version)), '', version.map(s).join(', ')])
  rows.push(['cold start: safe-deploy plan', s(median(plan)), '', plan.map(s).join(', ')])
  rows.push([
    'SSH round trips per deploy',
    String(trips.length + 1),
    '',
    `${tripLabels.join(', ')}, + upload`
  ])

  const table = [
    '| what | median | ratio | runs |',
    '| --- | --- | --- | --- |',
    ...rows.map(r => `| ${r.join(' | ')} |`)
  ].join('\n')
  const cpu = cpus()[0]?.model ?? 'unknown'
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  const md = [
    '# Benchmark results (`npm run bench`)',
    '',
    `Machine: ${cpus().length} cores (nproc), ${cpu}; load average at the end ${load}. Date: ${new Date().toISOString()}.`,
    `Command: \`npm run bench\` (BENCH_RUNS=${RUNS}, BENCH_FILES=${FILES}); sshd on loopback with a clean shell (root's ~/.bashrc skipped).`,
    `Reference app: the e2e fixture plus ${FILES} generated files; full upload ${incFullKiB.toFixed(0)} KiB compressed.`,
    'Every tool restarts with the same `bin/restart` and waits for the same health check (GET /health every 100 ms).',
    '',
    table,
    '',
    ...notes.map(n => `- ${n}`),
    '',
    'Stage times of single runs (the summary each run prints):',
    '',
    ...profiles.flatMap(([what, t]) => [`${what}:`, '', '```text', t, '```', '']),
    ''
  ].join('\n')
  process.stdout.write(`${md}\n`)
  // the analysis below the table (## Notes) is kept from the previous file
  const file = join(repoRoot, 'bench', 'RESULTS.md')
  const before = existsSync(file) ? readFileSync(file, 'utf8') : ''
  const kept = before.includes('\n## Notes') ? before.slice(before.indexOf('\n## Notes')) : ''
  writeFileSync(file, md + kept)
} finally {
  for (const c of cleanups) await c().catch(() => {})
  await stopAll()
}
