/**
 * Installs the Debian packages the e2e tests need (sshd, ssh-keygen, curl, sqlite3, ...).
 *
 * Missing packages are installed with apt-get; a failure throws with the tail of the apt log so that
 * e2e tests fail loudly instead of being skipped, on CI and locally alike.
 */
import { spawnSync } from 'node:child_process'
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export interface DebianPackage {
  /** Absolute path of a binary that the package provides; the package counts as installed when it exists. */
  binary: string
  /** Debian package name. */
  pkg: string
}

/** Packages every e2e test needs. Later additions: postgresql, mariadb-server, nginx-light, age, zstd. */
export const CORE_PACKAGES: DebianPackage[] = [
  { binary: '/usr/sbin/sshd', pkg: 'openssh-server' },
  { binary: '/usr/bin/ssh', pkg: 'openssh-client' },
  { binary: '/usr/bin/ssh-keygen', pkg: 'openssh-client' },
  { binary: '/usr/bin/curl', pkg: 'curl' },
  { binary: '/usr/bin/sqlite3', pkg: 'sqlite3' },
  // blue-green: the proxy in front of the two ports (__tests__/e2e/harness/nginx.ts)
  { binary: '/usr/sbin/nginx', pkg: 'nginx' }
]

/** Backups (__tests__/e2e/backup-*.test.ts): database servers and clients, zstd, age. */
export const DB_PACKAGES: DebianPackage[] = [
  { binary: '/usr/lib/postgresql/15/bin/initdb', pkg: 'postgresql' },
  { binary: '/usr/bin/pg_dump', pkg: 'postgresql-client' },
  { binary: '/usr/sbin/mariadbd', pkg: 'mariadb-server' },
  { binary: '/usr/bin/mariadb-dump', pkg: 'mariadb-client' },
  { binary: '/usr/bin/sqlite3', pkg: 'sqlite3' },
  { binary: '/usr/bin/zstd', pkg: 'zstd' },
  { binary: '/usr/bin/age', pkg: 'age' }
]

/**
 * Compose stacks (__tests__/e2e/compose.test.ts): a real container engine. podman runs images built
 * `FROM scratch` with a static busybox (no registry is reachable), under runc (see harness/podman.ts).
 */
export const CONTAINER_PACKAGES: DebianPackage[] = [
  { binary: '/usr/bin/podman', pkg: 'podman' },
  { binary: '/usr/sbin/runc', pkg: 'runc' },
  { binary: '/usr/bin/podman-compose', pkg: 'podman-compose' },
  { binary: '/bin/busybox', pkg: 'busybox-static' }
]

/** Where apt-get output goes (overridable with E2E_APT_LOG). */
export function aptLogFile(): string {
  return process.env.E2E_APT_LOG ?? path.join(os.tmpdir(), 'safe-deploy-e2e-apt.log')
}

function tail(file: string, lines = 40): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** Returns the packages whose binary is missing (deduplicated, in order). */
export function missingPackages(pkgs: DebianPackage[]): string[] {
  const missing: string[] = []
  for (const { binary, pkg } of pkgs) {
    if (!existsSync(binary) && !missing.includes(pkg)) missing.push(pkg)
  }
  return missing
}

/**
 * Ensures that every package's binary exists, installing the missing packages with apt-get
 * (`apt-get update` once, then `apt-get install -y -q`). Needs root, or passwordless sudo.
 * Throws an Error with the log tail when installation fails or a binary is still missing afterwards.
 */
export function ensureDebianPackages(pkgs: DebianPackage[]): void {
  const missing = missingPackages(pkgs)
  if (missing.length === 0) return

  const log = aptLogFile()
  mkdirSync(path.dirname(log), { recursive: true })
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
  const prefix = isRoot ? [] : ['sudo', '-n', '--preserve-env=DEBIAN_FRONTEND']
  if (!isRoot && !existsSync('/usr/bin/sudo')) {
    throw new Error(
      `e2e tests need the Debian packages ${missing.join(' ')}, which are missing; ` +
        'installing them needs root or passwordless sudo, and neither is available'
    )
  }
  if (!existsSync('/usr/bin/apt-get')) {
    throw new Error(`e2e tests need the Debian packages ${missing.join(' ')}, and apt-get is not available`)
  }

  process.stderr.write(`[e2e] installing missing Debian packages: ${missing.join(' ')} (log: ${log})\n`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const run = (args: string[]): void => {
    const [cmd, ...rest] = [...prefix, ...args] as [string, ...string[]]
    appendFileSync(log, `\n$ ${[cmd, ...rest].join(' ')}\n`)
    const started = Date.now()
    const res = spawnSync(cmd, rest, { env, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })
    appendFileSync(log, `${res.stdout ?? ''}${res.stderr ?? ''}`)
    appendFileSync(log, `[exit ${res.status ?? res.signal} after ${Date.now() - started} ms]\n`)
    if (res.error || res.status !== 0) {
      throw new Error(
        `Installing e2e test packages failed: \`${[cmd, ...rest].join(' ')}\` ` +
          `${res.error ? `could not run (${res.error.message})` : `exited with ${res.status ?? res.signal}`}.\n` +
          `Log ${log}, last lines:\n${tail(log)}`
      )
    }
  }

  // Wait for a dpkg lock held by another apt run instead of failing at once.
  const lock = ['-o', 'DPkg::Lock::Timeout=300']
  run(['apt-get', ...lock, 'update'])
  run(['apt-get', ...lock, 'install', '-y', '-q', ...missing])

  const still = pkgs.filter(p => !existsSync(p.binary))
  if (still.length > 0) {
    throw new Error(
      `After installing ${missing.join(' ')}, these binaries are still missing: ` +
        `${still.map(p => `${p.binary} (${p.pkg})`).join(', ')}.\nLog ${log}, last lines:\n${tail(log)}`
    )
  }
}
