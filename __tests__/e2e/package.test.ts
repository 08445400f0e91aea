/**
 * Installable and releasable, for real:
 * - `npm run bundle` (scripts/bundle.mjs) in a copy of the repository whose ssh2 and cpu-features have their
 *   native add-ons built (as a plain `npm ci` with install scripts does): dist/ gets no .node file, and a
 *   build that fails leaves the previous dist/ as it was;
 * - `npm pack` gives a small package that installs offline into an empty project and whose `safe-deploy`
 *   bin answers `--help` and plans a deploy.
 */
import { beforeAll, describe, expect, test } from '@jest/globals'
import { spawnSync, type SpawnSyncReturns } from 'node:child_process'
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tempDir } from './harness/sshd.js'
import { project } from './support.js'

const repo = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..')
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { name: string; version: string }

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  return { code: r.status ?? 255, stdout: r.stdout, stderr: r.stderr, output: `${r.stdout}${r.stderr}` }
}

function ok(r: ReturnType<typeof run>, what: string): ReturnType<typeof run> {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${r.output}`)
  return r
}

/** Every file under dir, relative. */
function filesUnder(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(e =>
    e.isDirectory() ? filesUnder(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`]
  )
}

const snapshot = (dir: string) =>
  Object.fromEntries(filesUnder(dir).map(f => [f, readFileSync(join(dir, f)).toString('base64')]))

/** The native add-ons whose install scripts `npm ci` runs, where node-gyp puts what it built. */
const ADDONS = [
  join('ssh2', 'lib', 'protocol', 'crypto', 'build', 'Release', 'sshcrypto.node'),
  join('cpu-features', 'build', 'Release', 'cpufeatures.node')
]

/**
 * A copy of the repository (its tracked files, dist/ included) whose node_modules links to this one's,
 * except the packages with add-ons and node-ssh (which requires ssh2, so that it finds the copy): those are
 * copied and get a "built" add-on (not loadable: ncc copies the file whatever it holds).
 */
function repoWithBuiltAddons(): string {
  const dir = tempDir('safe-deploy-bundle-')
  const tracked = ok(run('git', ['ls-files', '-z'], repo), 'git ls-files')
    .stdout.split('\0')
    .filter(Boolean)
  for (const f of tracked) {
    if (!existsSync(join(repo, f))) continue
    mkdirSync(join(dir, f, '..'), { recursive: true })
    cpSync(join(repo, f), join(dir, f))
  }
  const modules = realpathSync(join(repo, 'node_modules'))
  mkdirSync(join(dir, 'node_modules'))
  const copied = ['ssh2', 'cpu-features', 'node-ssh']
  for (const name of readdirSync(modules)) {
    if (copied.includes(name))
      cpSync(join(modules, name), join(dir, 'node_modules', name), { recursive: true })
    else symlinkSync(join(modules, name), join(dir, 'node_modules', name))
  }
  for (const addon of ADDONS) {
    mkdirSync(join(dir, 'node_modules', addon, '..'), { recursive: true })
    writeFileSync(join(dir, 'node_modules', addon), 'a native add-on built by node-gyp\n')
  }
  return dir
}

describe('npm run bundle', () => {
  let copy: string

  beforeAll(() => {
    copy = repoWithBuiltAddons()
  })

  test('with ssh2 and cpu-features add-ons built, dist/ is the three bundles and no .node file', () => {
    const r = ok(run('npm', ['run', 'bundle'], copy), 'npm run bundle')
    expect(r.stdout).toContain('bundled dist/index.js, dist/post.js, dist/cli.js')
    expect(filesUnder(join(copy, 'dist')).sort()).toEqual(['cli.js', 'index.js', 'package.json', 'post.js'])
    expect(filesUnder(copy).filter(f => f.endsWith('.node') && !f.startsWith('node_modules/'))).toEqual([])
    const cli = readFileSync(join(copy, 'dist', 'cli.js'), 'utf8')
    expect(cli.startsWith('#!/usr/bin/env node\n')).toBe(true)
    // the bundle loads (ssh2 with it, whose crypto falls back to pure JS without the add-on) and runs
    expect(ok(run(process.execPath, [join(copy, 'dist', 'cli.js'), '--version'], copy), 'cli').stdout).toBe(
      `${pkg.version}\n`
    )
    // an add-on is named, not shipped: the require fails at run time as when it was never built
    expect(cli).toContain('("./crypto/build/Release/sshcrypto.node")')
  }, 600_000)

  test('a build that fails leaves the previous dist/ in place, byte for byte', () => {
    const before = snapshot(join(copy, 'dist'))
    expect(Object.keys(before).length).toBeGreaterThan(0)
    appendFileSync(join(copy, 'src', 'post.ts'), '\nexport const = ;\n')
    const r = run('npm', ['run', 'bundle'], copy)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('bundle failed; dist/ is unchanged')
    expect(snapshot(join(copy, 'dist'))).toEqual(before)
    // and nothing half-built is left next to it
    expect(readdirSync(join(copy, 'build')).filter(f => f.startsWith('dist-'))).toEqual([])
  }, 600_000)
})

describe('npm pack', () => {
  let packDir: string
  let installDir: string
  let tarball: string

  beforeAll(() => {
    packDir = tempDir('safe-deploy-pack-')
    const packed = ok(run('npm', ['pack', '--json', '--pack-destination', packDir], repo), 'npm pack')
    const [info] = JSON.parse(packed.stdout) as {
      filename: string
      size: number
      unpackedSize: number
      files: { path: string }[]
    }[]
    if (!info) throw new Error(`npm pack printed no package: ${packed.output}`)
    tarball = join(packDir, info.filename)
    console.log(
      `${info.filename}: ${(info.size / 1024).toFixed(0)} KiB packed, ${(info.unpackedSize / 1024).toFixed(0)} KiB unpacked, ${info.files.length} files`
    )
    installDir = tempDir('safe-deploy-install-')
  })

  test("the package holds the bin, its schema, init's example configs, README and LICENSE, and nothing else", () => {
    const listing = ok(run('tar', ['-tzf', tarball], packDir), 'tar')
      .stdout.trim()
      .split('\n')
      .sort()
    expect(listing).toEqual(
      [
        'LICENSE',
        'README.md',
        'dist/cli.js',
        'dist/package.json',
        // what `init` starts from
        ...[
          'demo',
          'docker-bots',
          'flask-compose',
          'laravel-mysql',
          'node-systemd',
          'python-bot-systemd'
        ].map(d => `examples/${d}/safe-deploy.yml`),
        'package.json',
        'safe-deploy.schema.json'
      ].map(f => `package/${f}`)
    )
    const manifest = JSON.parse(
      ok(run('tar', ['-xzOf', tarball, 'package/package.json'], packDir), 'tar').stdout
    ) as Record<string, unknown>
    expect(manifest.bin).toEqual({ 'safe-deploy': 'dist/cli.js' })
    // dist/cli.js is self-contained: installing it fetches nothing
    expect(manifest.dependencies).toBeUndefined()
  })

  test('installs offline into an empty project; `npx safe-deploy --help` and a plan work', async () => {
    writeFileSync(join(installDir, 'package.json'), JSON.stringify({ name: 'consumer', private: true }))
    const env = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' }
    ok(run('npm', ['install', '--offline', '--ignore-scripts', tarball], installDir, env), 'npm install')
    const help = ok(run('npx', ['--offline', 'safe-deploy', '--help'], installDir, env), 'npx --help')
    expect(help.stdout).toContain('usage: safe-deploy <command> [options]')
    const version = ok(run('npx', ['--offline', 'safe-deploy', '--version'], installDir, env), 'npx')
    expect(version.stdout.trim()).toBe(pkg.version)

    const root = join(tempDir('safe-deploy-pack-host-'), 'srv')
    const p = await project({ hosts: [], local: true, root })
    p.app({ version: '1.0.0' })
    const bin = join(installDir, 'node_modules', '.bin', 'safe-deploy')
    const plan: SpawnSyncReturns<string> = spawnSync(bin, ['plan', '--config', p.configFile], {
      cwd: p.dir,
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      encoding: 'utf8'
    })
    if (plan.status !== 0) throw new Error(`plan exited ${plan.status}:\n${plan.stdout}${plan.stderr}`)
    expect(plan.stdout).toContain('echo built > BUILD_OK')
    expect(plan.stdout).toContain('bin/restart')
    // plan runs nothing on the host
    expect(existsSync(join(root, 'releases'))).toBe(false)

    // init finds the examples shipped next to dist/ in the package
    const consumer = tempDir('safe-deploy-pack-init-')
    const init = spawnSync(bin, ['init', '--preset', 'node', '--ci', 'none', '--dir', consumer], {
      cwd: consumer,
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      encoding: 'utf8'
    })
    if (init.status !== 0) throw new Error(`init exited ${init.status}:\n${init.stdout}${init.stderr}`)
    expect(readFileSync(join(consumer, 'safe-deploy.yml'), 'utf8')).toContain(
      'Written by `safe-deploy init --preset node`'
    )
  }, 300_000)
})
