/**
 * Capistrano 3 (Debian's `capistrano`) for the benchmarks that run it beside safe-deploy: a project dir with
 * the Capfile of the git strategy, the `cap` and `git` commands, Ruby string literals.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { SshHost } from '../__tests__/e2e/harness/sshd.js'

/** Whether `cap` is installed (and not switched off with BENCH_CAPISTRANO=0). */
export function capistranoWanted(): boolean {
  return process.env.BENCH_CAPISTRANO !== '0' && spawnSync('cap', ['--version']).status === 0
}

export function capVersion(): string {
  const r = spawnSync('cap', ['--version'], { encoding: 'utf8' })
  return /Capistrano Version: (\S+)/.exec(r.stdout)?.[1] ?? '3'
}

/** A Ruby double-quoted string literal (no #{} in our paths). */
export const rb = (s: string) => JSON.stringify(s)

/**
 * Creates dir/Capfile (deploy tasks, git strategy from `repo` over file://), dir/config/deploy.rb (application
 * ledger, branch main, 5 releases kept, then `deployRb`) and dir/config/deploy/ for the stage files.
 */
export function capProject(
  dir: string,
  opts: { repo: string; deployTo: string; deployRb: string[]; capfile?: string[]; application?: string }
): void {
  mkdirSync(join(dir, 'config', 'deploy'), { recursive: true })
  writeFileSync(
    join(dir, 'Capfile'),
    [
      ...(opts.capfile ?? []),
      'require "capistrano/setup"',
      'require "capistrano/deploy"',
      'require "capistrano/scm/git"',
      'install_plugin Capistrano::SCM::Git',
      ''
    ].join('\n')
  )
  writeFileSync(
    join(dir, 'config', 'deploy.rb'),
    [
      `set :application, ${rb(opts.application ?? 'ledger')}`,
      `set :repo_url, ${rb(`file://${opts.repo}`)}`,
      'set :branch, "main"',
      `set :deploy_to, ${rb(opts.deployTo)}`,
      'set :keep_releases, 5',
      'set :log_level, :info',
      ...opts.deployRb,
      ''
    ].join('\n')
  )
}

export function git(cwd: string, ...args: string[]): void {
  const r = spawnSync('git', ['-c', 'user.name=bench', '-c', 'user.email=bench@example.invalid', ...args], {
    cwd,
    encoding: 'utf8'
  })
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`)
}

/** Runs a command to its end: exit code and stdout+stderr together. */
export function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; out: string }> {
  return new Promise(resolve => {
    const child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, LANG: 'C.UTF-8' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let out = ''
    child.stdout.on('data', c => (out += String(c)))
    child.stderr.on('data', c => (out += String(c)))
    child.on('close', code => resolve({ code: code ?? -1, out }))
    child.on('error', e => resolve({ code: -1, out: e.message }))
  })
}

/**
 * The Capistrano 3 project `npm run bench` deploys with: git strategy from a local repo, `bin/restart` inside
 * `current` after `deploy:publishing` (so also after `deploy:rollback`), with `env` set for it. `nodelay` patches
 * `Socket.tcp` in the Capfile so that net-ssh's socket has TCP_NODELAY (net-ssh 7 has no option for it).
 */
export function writeCapistrano(opts: {
  capDir: string
  repo: string
  root: string
  host: SshHost
  env: Record<string, string>
  application?: string
  nodelay?: boolean
}): void {
  const { capDir, host } = opts
  const nodelay = [
    'require "socket"',
    'Socket.singleton_class.prepend(Module.new do',
    '  def tcp(*args, **kw, &blk)',
    '    s = super',
    '    s.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1) if s.is_a?(Socket)',
    '    s',
    '  end',
    'end)'
  ]
  const env = Object.entries(opts.env)
    .map(([k, v]) => `${k}: ${rb(v)}`)
    .join(', ')
  capProject(capDir, {
    repo: opts.repo,
    deployTo: opts.root,
    application: opts.application,
    capfile: opts.nodelay ? nodelay : [],
    deployRb: [
      'namespace :app do',
      '  task :restart do',
      '    on roles(:app) do',
      '      within current_path do',
      `        with ${env} do`,
      '          execute :sh, "bin/restart"',
      '        end',
      '      end',
      '    end',
      '  end',
      'end',
      'after "deploy:publishing", "app:restart"'
    ]
  })
  capServer(capDir, host)
}

/** config/deploy/production.rb: the sshd host as root, its key and known_hosts only, host keys verified. */
export function capServer(capDir: string, host: SshHost): void {
  writeFileSync(
    join(capDir, 'config', 'deploy', 'production.rb'),
    [
      `server ${rb(host.address)}, user: "root", port: ${host.port}, roles: %w{app},`,
      '  ssh_options: {',
      `    keys: [${rb(host.privateKeyFile)}], keys_only: true, auth_methods: %w(publickey), config: false,`,
      `    user_known_hosts_file: ${rb(host.knownHostsFile)}, verify_host_key: :always`,
      '  }',
      ''
    ].join('\n')
  )
}
