/**
 * The Capistrano 3 project the benchmarks deploy with (Debian's `capistrano`): git strategy from a local
 * repo, `bin/restart` inside `current` after `deploy:publishing` (so also after `deploy:rollback`), with
 * `env` set for it. `nodelay` patches `Socket.tcp` in the Capfile so that net-ssh's socket has TCP_NODELAY
 * (net-ssh 7 has no option for it, and SSHKit passes none through).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { SshHost } from '../__tests__/e2e/harness/sshd.js'

const rb = (s: string) => JSON.stringify(s) // a Ruby double-quoted string literal (no #{} in our paths)

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
  mkdirSync(join(capDir, 'config', 'deploy'), { recursive: true })
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
  writeFileSync(
    join(capDir, 'Capfile'),
    [
      ...(opts.nodelay ? nodelay : []),
      'require "capistrano/setup"',
      'require "capistrano/deploy"',
      'require "capistrano/scm/git"',
      'install_plugin Capistrano::SCM::Git',
      ''
    ].join('\n')
  )
  const env = Object.entries(opts.env)
    .map(([k, v]) => `${k}: ${rb(v)}`)
    .join(', ')
  writeFileSync(
    join(capDir, 'config', 'deploy.rb'),
    [
      `set :application, ${rb(opts.application ?? 'ledger')}`,
      `set :repo_url, ${rb(`file://${opts.repo}`)}`,
      'set :branch, "main"',
      `set :deploy_to, ${rb(opts.root)}`,
      'set :keep_releases, 5',
      'set :log_level, :info',
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
      'after "deploy:publishing", "app:restart"',
      ''
    ].join('\n')
  )
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
