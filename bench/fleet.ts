/**
 * Fleet benchmark (not a test: `npx tsx bench/fleet.ts`, as root): deploy wall time of the reference app
 * (examples/demo/app, as in bench/deploy.ts) to 1, 5, 10 and 20 hosts, safe-deploy side by side with
 * Capistrano 3 (Debian's `capistrano`) on the same sshd instances, in one run. Median of BENCH_RUNS (3) runs
 * per point; prints the ratios and the growth from 1 to 20 hosts.
 *
 * Each "host" is an sshd of the e2e harness on its own loopback address, logged in to as its own deploy user
 * (sdfleet01, sdfleet02, ...) whose HOME is an empty directory: the login shell sources no profile, as for a
 * deploy user (root's ~/.bashrc on this machine runs `pyenv init`, about 0.4 s per command). Both tools deploy
 * into that HOME (`~/sd`, `~/cap`), run the same `bin/restart` and then the same health check (curl on the
 * host, retried every 100 ms), each on its own app port. Capistrano uses its git strategy from a local
 * repository (the default way it gets code to a host) and runs each task on all hosts in parallel (SSHKit's
 * default). One warm-up deploy per tool to every host before the measured runs; the order of the two tools
 * alternates between runs.
 *
 *   BENCH_POINTS=1,5,10,20  BENCH_RUNS=3  BENCH_CAPISTRANO=0 (safe-deploy only)
 *   BENCH_PROFILE=1: per deploy the stage times and CPU used (this process, the whole machine); at the end
 *   the transport floor per point (connect, 10 trivial commands per host one after another, close)
 */
import { spawnSync } from 'node:child_process'
import { chmodSync, cpSync, readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { SshTransport } from '../src/transport/ssh.js'
import { freePort, startSshd, stopAll, tempDir, type SshHost } from '../__tests__/e2e/harness/sshd.js'
import { stopApp } from '../__tests__/e2e/harness/app.js'
import { cli } from '../__tests__/e2e/support.js'
import { capistranoWanted, capProject, capVersion, git, rb, run } from './capistrano.js'

const POINTS = (process.env.BENCH_POINTS ?? '1,5,10,20').split(',').map(Number)
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const PROFILE = process.env.BENCH_PROFILE === '1'
const MAX = Math.max(...POINTS)
const CAP = capistranoWanted()
const APP = join(import.meta.dirname, '..', 'examples', 'demo', 'app')

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
const log = (line: string) => process.stderr.write(`${line}\n`)

interface FleetHost {
  ssh: SshHost
  user: string
  home: string
  sdPort: number
  capPort: number
}

function sh(cmd: string): void {
  const r = spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`)
}

/** A deploy user with an empty HOME (no profile to source); its files are its own. */
function deployUser(n: number): { user: string; home: string } {
  const user = `sdfleet${String(n).padStart(2, '0')}`
  const home = `/home/${user}`
  if (spawnSync('id', [user]).status !== 0) sh(`useradd -M -d ${home} -s /bin/bash ${user}`)
  // no password, but not locked: sshd (UsePAM no) refuses locked accounts even with a key
  sh(`usermod -p '*' ${user}`)
  sh(`rm -rf ${home} && mkdir -p ${home} && chown ${user}: ${home} && chmod 755 ${home}`)
  return { user, home }
}

/** What a person does once per host: the shared .env with the app's port, and the logs dir. */
function sharedFiles(h: FleetHost, root: string, port: number): void {
  sh(
    `mkdir -p ${root}/shared/logs && printf 'PORT=${port}\\n' > ${root}/shared/.env && chown -R ${h.user}: ${root}`
  )
}

/** The health check both tools run on each host, inside the release (the demo app answers /health). */
const CHECK =
  'for i in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1'

// --- safe-deploy ------------------------------------------------------------------------------------------

const work = tempDir('safe-deploy-bench-fleet-')
const src = join(work, 'app')
cpSync(APP, src, { recursive: true })

function sdConfig(hosts: FleetHost[]): string {
  const config = {
    app: 'ledger',
    path: '/srv/ledger',
    hosts: hosts.map((h, i) => ({
      name: `host-${i + 1}`,
      address: h.ssh.address,
      port: h.ssh.port,
      user: h.user,
      path: `${h.home}/sd`
    })),
    ssh: { private_key: 'env:SSH_KEY', known_hosts: 'env:KNOWN_HOSTS' },
    source: { dir: './app' },
    shared: { files: ['.env'], dirs: ['logs'] },
    stages: { restart: 'bin/restart' },
    verify: { command: `. ./.env && ${CHECK}` }
  }
  const file = join(work, `safe-deploy-${hosts.length}.yml`)
  writeFileSync(file, stringify(config))
  return file
}

async function safeDeploy(hosts: FleetHost[], env: NodeJS.ProcessEnv): Promise<number> {
  const file = sdConfig(hosts)
  const cpu0 = process.cpuUsage()
  const busy0 = machineBusy()
  const t0 = performance.now()
  const { code, stdout: json, stderr: text } = await cli(['deploy', '--json', '--config', file], env)
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  const busy = machineBusy()
  if (code !== 0)
    throw new Error(`safe-deploy to ${hosts.length} hosts exited ${code}:\n${text.slice(-3000)}`)
  if (PROFILE) {
    // the result's own stage durations (0.1 s resolution), and what is left: loading, the report, closing
    const r = JSON.parse(json) as { stages: { name: string; duration_s: number }[] }
    const staged = r.stages.reduce((a, st) => a + st.duration_s, 0)
    const parts = r.stages.filter(st => st.duration_s > 0).map(st => `${st.name} ${st.duration_s.toFixed(1)}`)
    const runner = (cpu.user + cpu.system) / 1e6
    log(
      `   profile (${hosts.length} hosts): ${parts.join(', ')}, outside stages ${(ms / 1000 - staged).toFixed(2)}; ` +
        `CPU: safe-deploy's process ${runner.toFixed(2)} s, the whole machine ` +
        `${((busy.busy - busy0.busy) / 100).toFixed(2)} s of ${((busy.total - busy0.total) / 100).toFixed(2)} s`
    )
  }
  return ms
}

/**
 * The floor the transport and this machine set: connect to every host at once, run COMMANDS_PER_DEPLOY
 * trivial commands one after another on each (all hosts in parallel), close. What a deploy does per host
 * besides waiting for its commands is on top of this.
 */
const COMMANDS_PER_DEPLOY = 10
async function transportFloor(hosts: FleetHost[], key: string, knownHosts: string): Promise<number> {
  const t0 = performance.now()
  await Promise.all(
    hosts.map(async h => {
      const t = await SshTransport.connect({
        label: h.user,
        address: h.ssh.address,
        port: h.ssh.port,
        user: h.user,
        privateKey: key,
        knownHosts,
        fingerprints: [],
        insecureSkipHostKeyCheck: false,
        connectTimeoutMs: 30_000,
        connectRetries: 0,
        keepaliveIntervalMs: 10_000
      })
      for (let i = 0; i < COMMANDS_PER_DEPLOY; i++) await t.exec('true')
      await t.close()
    })
  )
  return performance.now() - t0
}

/** CPU ticks (1/100 s) of the whole machine from /proc/stat: busy (not idle or iowait) and total (all cores). */
function machineBusy(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
  const f = line.trim().split(/\s+/).slice(1).map(Number)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0)
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total }
}

// --- Capistrano ---------------------------------------------------------------------------------------------

const capDir = join(work, 'cap')
const repo = join(work, 'repo')

function capSetup(): void {
  cpSync(APP, repo, { recursive: true })
  git(repo, 'init', '-q', '-b', 'main')
  git(repo, 'add', '-A')
  git(repo, 'commit', '-q', '-m', 'init')
  // the deploy users clone it over file://
  writeFileSync(join(work, 'gitconfig'), '[safe]\n\tdirectory = *\n')
  sh(`chmod -R a+rX ${work}`)
  capProject(capDir, {
    repo,
    deployTo: '~/cap',
    deployRb: [
      'append :linked_files, ".env"',
      'append :linked_dirs, "logs"',
      // the repository belongs to root; the deploy users read it
      `set :default_env, { "GIT_CONFIG_GLOBAL" => ${rb(join(work, 'gitconfig'))} }`,
      // the "hosts" share this machine's /tmp, where every deploy user would upload the same GIT_SSH wrapper
      // (one file name for all); a file:// repository needs no ssh wrapper anyway
      'Rake::Task["git:wrapper"].clear_actions',
      'namespace :app do',
      '  task :restart do',
      '    on roles(:app) do',
      '      within current_path do',
      '        with safe_deploy_shared: "$HOME/cap/shared" do',
      '          execute :sh, "bin/restart"',
      '        end',
      '      end',
      '    end',
      '  end',
      '  task :verify do',
      '    on roles(:app) do',
      '      within current_path do',
      `        execute :sh, "-c", ${rb(`'. ./.env && ${CHECK}'`)}`,
      '      end',
      '    end',
      '  end',
      'end',
      'after "deploy:publishing", "app:restart"',
      'after "app:restart", "app:verify"'
    ]
  })
}

function capStage(hosts: FleetHost[], knownHosts: string, key: string): string {
  const stage = `fleet${hosts.length}`
  writeFileSync(
    join(capDir, 'config', 'deploy', `${stage}.rb`),
    [
      ...hosts.map(
        h => `server ${rb(h.ssh.address)}, user: ${rb(h.user)}, port: ${h.ssh.port}, roles: %w{app}`
      ),
      'set :ssh_options, {',
      `  keys: [${rb(key)}], keys_only: true, auth_methods: %w(publickey), config: false,`,
      `  user_known_hosts_file: ${rb(knownHosts)}, verify_host_key: :always`,
      '}',
      ''
    ].join('\n')
  )
  return stage
}

async function capistrano(stage: string): Promise<number> {
  const t0 = performance.now()
  const r = await run('cap', [stage, 'deploy'], capDir)
  const ms = performance.now() - t0
  if (r.code !== 0) throw new Error(`cap ${stage} deploy exited ${r.code}:\n${r.out.slice(-3000)}`)
  return ms
}

// --- the run ----------------------------------------------------------------------------------------------

const hosts: FleetHost[] = []
try {
  for (let i = 1; i <= MAX; i++) {
    const ssh = await startSshd()
    const { user, home } = deployUser(i)
    hosts.push({ ssh, user, home, sdPort: await freePort(), capPort: await freePort() })
  }
  // one client key for the fleet, as ssh.private_key is one key
  const key = hosts[0]?.ssh as SshHost
  for (const h of hosts) {
    writeFileSync(join(h.ssh.dir, 'etc', 'authorized_keys'), readFileSync(`${key.privateKeyFile}.pub`))
    // sshd reads the file as the user logging in
    sh(`chmod 711 ${h.ssh.dir} && chmod 755 ${h.ssh.dir}/etc && chmod 644 ${h.ssh.dir}/etc/authorized_keys`)
  }
  const knownHosts = join(work, 'known_hosts')
  writeFileSync(knownHosts, hosts.map(h => h.ssh.knownHostsLine).join('\n') + '\n')
  chmodSync(key.privateKeyFile, 0o600)
  for (const h of hosts) {
    sharedFiles(h, `${h.home}/sd`, h.sdPort)
    sharedFiles(h, `${h.home}/cap`, h.capPort)
  }
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    SSH_KEY: key.privateKey,
    KNOWN_HOSTS: readFileSync(knownHosts, 'utf8')
  }
  process.chdir(work)
  if (CAP) capSetup()
  const capStages = new Map(
    POINTS.map(n => [n, CAP ? capStage(hosts.slice(0, n), knownHosts, key.privateKeyFile) : ''])
  )

  log(
    `load average: ${loadavg()
      .map(l => l.toFixed(1))
      .join(' ')} (${availableParallelism()} cores)`
  )
  log(`warm-up: one deploy of each tool to all ${MAX} hosts`)
  await safeDeploy(hosts, env)
  if (CAP) await capistrano(capStages.get(MAX) ?? '')

  const sd = new Map<number, number[]>()
  const cap = new Map<number, number[]>()
  let version = 0
  for (const n of POINTS) {
    for (let r = 0; r < RUNS; r++) {
      version++
      writeFileSync(join(src, 'VERSION'), `2.0.${version}\n`)
      const order = (r + n) % 2 === 0 ? ['sd', 'cap'] : ['cap', 'sd']
      for (const tool of order) {
        if (tool === 'sd') {
          const ms = await safeDeploy(hosts.slice(0, n), env)
          sd.set(n, [...(sd.get(n) ?? []), ms])
          log(`   ${n} hosts, run ${r + 1}: safe-deploy ${(ms / 1000).toFixed(2)} s`)
        } else if (CAP) {
          writeFileSync(join(repo, 'VERSION'), `2.0.${version}\n`)
          git(repo, 'commit', '-q', '-am', `v${version}`)
          const ms = await capistrano(capStages.get(n) ?? '')
          cap.set(n, [...(cap.get(n) ?? []), ms])
          log(`   ${n} hosts, run ${r + 1}: Capistrano ${(ms / 1000).toFixed(2)} s`)
        }
      }
    }
  }

  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`
  const one = median(sd.get(POINTS[0] ?? 1) ?? [])
  const capOne = CAP ? median(cap.get(POINTS[0] ?? 1) ?? []) : 0
  const rows = POINTS.map(n => {
    const a = median(sd.get(n) ?? [])
    const b = CAP ? median(cap.get(n) ?? []) : NaN
    return [
      String(n),
      s(a),
      `${(a / one).toFixed(2)}x`,
      CAP ? s(b) : '-',
      CAP ? `${(b / capOne).toFixed(2)}x` : '-',
      CAP ? `${(a / b).toFixed(2)}` : '-'
    ]
  })
  const head = [
    'hosts',
    `safe-deploy (median of ${RUNS})`,
    'vs 1 host',
    `Capistrano ${CAP ? capVersion() : '(not run)'}`,
    'vs 1 host',
    'safe-deploy / Capistrano'
  ]
  const table = [head, head.map(() => '---'), ...rows].map(r => `| ${r.join(' | ')} |`).join('\n')
  console.log(table)
  if (PROFILE) {
    const floors: string[] = []
    for (const n of POINTS) {
      const runs: number[] = []
      for (let r = 0; r < RUNS; r++)
        runs.push(await transportFloor(hosts.slice(0, n), key.privateKey, env.KNOWN_HOSTS))
      floors.push(`${n} hosts ${s(median(runs))}`)
    }
    console.log(
      `\ntransport floor (connect, ${COMMANDS_PER_DEPLOY} commands one after another on each host, close): ${floors.join(', ')}`
    )
  }
  console.log(
    `load average at the end: ${loadavg()
      .map(l => l.toFixed(1))
      .join(' ')} (${availableParallelism()} cores)`
  )
  const last = POINTS.at(-1) ?? MAX
  const growth = median(sd.get(last) ?? []) / one
  console.log(
    `\nsafe-deploy: ${POINTS[0]} -> ${last} hosts: ${growth.toFixed(2)}x (target <= 1.5x)` +
      (CAP
        ? `; Capistrano: ${(median(cap.get(last) ?? []) / capOne).toFixed(2)}x; each point under half of Capistrano's: ${rows.every(r => Number(r[5]) < 0.5) ? 'yes' : 'no'}`
        : '')
  )
} finally {
  for (const h of hosts) {
    await stopApp(`${h.home}/sd/shared/app.pid`)
    await stopApp(`${h.home}/cap/shared/app.pid`)
  }
  await stopAll()
}
