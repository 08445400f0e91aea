/**
 * stages.build_local and its cache, end to end against a real sshd: the build runs once on the runner in a
 * staging copy of source.dir, what it leaves there is what every host gets, the user's tree is untouched; a
 * failed or interrupted build changes nothing on a server (exit 3); `cache:` paths come back on the next
 * deploy from the local cache dir (the CLI's BuildCache).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { fastShell, startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { pausePoint } from './harness/pause.js'
import { expectExit, resultOf, spawnAction, spawnCli } from './harness/cliproc.js'
import { startCacheService } from './harness/cacheservice.js'
import {
  actionStep,
  answer,
  currentOf,
  historyOf,
  lastLog,
  lockExists,
  quickProject,
  releasesOf,
  snapshot,
  stateEnv,
  stopApp
} from './support.js'

let host: SshHost
const pidFiles: string[] = []

beforeAll(async () => {
  host = await startSshd({ extraConfig: fastShell() })
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  await stopAll()
})

type Config = Record<string, unknown>

async function setup(name: string, extra: (c: Config) => Config) {
  const { p, root, pidFile } = await quickProject(host, name, extra)
  pidFiles.push(pidFile)
  return { p, root }
}

const stagesWith = (c: Config, more: Config) => ({ ...(c.stages as Config), ...more })
const stagingDirs = () => readdirSync(tmpdir()).filter(f => f.startsWith('safe-deploy-build-'))

describe('stages.build_local', () => {
  test('runs once on the runner in a staging copy; its output is uploaded; source.dir is untouched', async () => {
    const { p, root } = await setup('build-local-ok', c => ({
      ...c,
      stages: stagesWith(c, {
        build_local:
          'mkdir -p dist && echo "built from $(cat VERSION)" > dist/bundle.txt && touch node_modules_made',
        // the host-side build sees what the runner built
        build: 'test -f dist/bundle.txt && echo built > BUILD_OK'
      })
    }))
    p.app({ version: '1.0.0' })
    const before = stagingDirs()
    const r = await p.deploy(['--json'])
    expectExit(r, 0)
    const res = resultOf(r)
    const release = res.release as string
    expect(currentOf(root)).toBe(`releases/${release}`)
    expect(readFileSync(join(root, 'releases', release, 'dist', 'bundle.txt'), 'utf8')).toBe(
      'built from 1.0.0\n'
    )
    expect(existsSync(join(root, 'releases', release, 'node_modules_made'))).toBe(true)
    // the user's tree is not written to
    expect(existsSync(join(p.dir, 'app', 'dist'))).toBe(false)
    expect(existsSync(join(p.dir, 'app', 'node_modules_made'))).toBe(false)
    expect(res.stages.map(s => s.name)).toEqual([
      'preflight',
      'test',
      'build-local',
      'deploy',
      'migrate',
      'switch',
      'verify',
      'cleanup'
    ])
    expect(res.stages.find(s => s.name === 'build-local')?.status).toBe('ok')
    const log = lastLog(p.logDir)
    expect(log).toContain('[build-local] [runner] $ mkdir -p dist')
    expect(log).toContain('[build-local] build-local done')
    // the terminal: its own group while it runs
    expect(r.stderr).toMatch(/^== build-local$/m)
    // the staging copy is removed after the run
    expect(stagingDirs()).toEqual(before)
    expect(await answer(p.port)).toBe('version 1.0.0')
  })

  test('a failing build: exit 3, nothing on the server changed, the lock is released', async () => {
    const { p, root } = await setup('build-local-fails', c => ({
      ...c,
      stages: stagesWith(c, { build_local: 'echo compiling; exit 7' })
    }))
    p.app({ version: '1.0.0' })
    const v1 = resultOf(await p.deploy(['--json']))
    // the first deploy already fails: no release at all
    expect(v1.exitCode).toBe(3)
    expect(releasesOf(root)).toEqual([])
    expect(v1.error).toMatchObject({ stage: 'build-local', host: 'runner' })
    expect(v1.error?.message).toBe(
      'build_local command `echo compiling; exit 7` failed on the runner (exit 7)'
    )
    expect(v1.verdict).toMatch(/^DEPLOYMENT FAILED at build-local on runner: .*Nothing live was changed/)
    expect(lockExists(root)).toBe(false)
    expect(lastLog(p.logDir)).toContain('compiling')
  })

  test('a failing build after a good deploy: the previous release serves, no new release dir', async () => {
    const { p, root } = await setup('build-local-fails-2', c => ({
      ...c,
      stages: stagesWith(c, { build_local: 'test ! -f BREAK' })
    }))
    p.app({ version: '1.0.0' })
    const ok = await p.deploy(['--json'])
    expectExit(ok, 0)
    const v1 = resultOf(ok).release as string
    p.app({ version: '2.0.0' })
    writeFileSync(join(p.dir, 'app', 'BREAK'), '')
    const r = await p.deploy(['--json'])
    expectExit(r, 3)
    expect(releasesOf(root)).toEqual([v1])
    expect(currentOf(root)).toBe(`releases/${v1}`)
    expect(await answer(p.port)).toBe('version 1.0.0')
    expect(lockExists(root)).toBe(false)
    // a failure before anything changed on a server: history records it as failed, current unchanged
    expect(historyOf(root).at(-1)).toMatchObject({
      status: 'failed',
      error: expect.stringMatching(/^build-local: /)
    })
  })

  test('SIGINT during the build: it is stopped, exit 3, nothing on the server changed, lock released', async () => {
    const marks = tempDir('marks-')
    const pause = pausePoint(marks, 'build-local')
    const { p, root } = await setup('build-local-sigint', c => ({
      ...c,
      stages: stagesWith(c, { build_local: `${pause.shell}; touch "$HOME/never"` })
    }))
    p.app({ version: '1.0.0' })
    const before = stagingDirs()
    pause.arm()
    const proc = spawnCli(['deploy', '--json', '--config', p.configFile], p.env, p.dir)
    await proc.line(/^== build-local$/)
    await pause.reached()
    await proc.cancel()
    pause.release()
    const r = await proc.exited
    expect(r.signal).toBeNull()
    expectExit(r, 3)
    const res = resultOf(r)
    expect(res.error).toMatchObject({ stage: 'build-local', host: 'runner' })
    expect(res.error?.message).toMatch(/: interrupted$/)
    expect(res.verdict).toMatch(/Nothing live was changed/)
    // the interrupted build does not go on
    await new Promise(done => setTimeout(done, 1500))
    expect(pause.passed()).toBe(false)
    expect(releasesOf(root)).toEqual([])
    expect(lockExists(root)).toBe(false)
    expect(stagingDirs()).toEqual(before)
  })

  test('SIGKILL during the build: nothing on the server changed; the lock is what is left, and the next deploy takes it over once expired', async () => {
    const marks = tempDir('marks-')
    const pause = pausePoint(marks, 'build-local')
    const { p, root } = await setup('build-local-sigkill', c => ({
      ...c,
      lock: { ttl: '1s' },
      stages: stagesWith(c, { build_local: pause.shell })
    }))
    p.app({ version: '1.0.0' })
    pause.arm()
    const proc = spawnCli(['deploy', '--json', '--config', p.configFile], p.env, p.dir)
    await pause.reached()
    proc.child.kill('SIGKILL')
    expect((await proc.exited).signal).toBe('SIGKILL')
    pause.release()
    expect(releasesOf(root)).toEqual([])
    expect(currentOf(root)).toBeUndefined()
    await new Promise(done => setTimeout(done, 1500))
    const next = await p.deploy(['--json'])
    expectExit(next, 0)
    expect(next.stderr).toContain('took over an expired lock')
    expect(currentOf(root)).toBe(`releases/${resultOf(next).release}`)
  })
})

describe('stages.build_local in the Action (dist/index.js)', () => {
  test('SIGKILL of the main step during the build: the post step releases the lock; nothing on the server changed', async () => {
    const repo = fileURLToPath(new URL('../..', import.meta.url))
    if (!existsSync(join(repo, 'dist', 'index.js')))
      throw new Error('dist/index.js is missing: run `npm run bundle` first')
    const marks = tempDir('marks-')
    const pause = pausePoint(marks, 'build-local')
    const { p, root } = await setup('build-local-action-sigkill', c => ({
      ...c,
      stages: stagesWith(c, { build_local: pause.shell })
    }))
    p.app({ version: '1.0.0' })
    pause.arm()
    const main = actionStep(p, 'main')
    const proc = spawnAction('index', main.env, p.dir)
    await pause.reached()
    proc.child.kill('SIGKILL')
    expect((await proc.exited).signal).toBe('SIGKILL')
    pause.release()
    expect(lockExists(root)).toBe(true)
    const post = actionStep(p, 'post')
    const r = await spawnAction('post', { ...post.env, ...stateEnv(main.state()) }, p.dir).exited
    expectExit(r, 0)
    expect(lockExists(root)).toBe(false)
    expect(releasesOf(root)).toEqual([])
    expect(currentOf(root)).toBeUndefined()
    expect(r.stdout).toContain('stopped during build-local')
  })
})

describe('cache: (the CLI keeps it in a local dir)', () => {
  const build = [
    'if [ -f deps/fetched ]; then echo reused > FROM_CACHE; else mkdir -p deps && echo once > deps/fetched && echo fresh > FROM_CACHE; fi',
    'echo "SECRET=x" > deps/.env.local'
  ].join('; ')

  test('the second deploy restores the paths (the log says hit) and build_local sees them; a new lock file misses', async () => {
    const cacheDir = tempDir('build-cache-')
    const { p, root } = await setup('build-local-cache', c => ({
      ...c,
      stages: stagesWith(c, { build_local: build }),
      cache: { paths: ['deps'], key_files: ['deps.lock'] }
    }))
    p.app({ version: '1.0.0' })
    writeFileSync(join(p.dir, 'app', 'deps.lock'), 'left-pad 1.0.0\n')
    const first = await p.deploy(['--json', '--cache-dir', cacheDir])
    expectExit(first, 0)
    const r1 = resultOf(first).release as string
    expect(readFileSync(join(root, 'releases', r1, 'FROM_CACHE'), 'utf8')).toBe('fresh\n')
    const log1 = lastLog(p.logDir)
    expect(log1).toMatch(/cache miss: no entry for key safe-deploy-ledger-[0-9a-f]{64}/)
    expect(log1).toContain('cache saved: deps to the local cache')
    const keys = readdirSync(cacheDir)
    expect(keys).toHaveLength(1)
    expect(keys[0]).toMatch(/^safe-deploy-ledger-[0-9a-f]{64}$/)

    p.app({ version: '2.0.0' })
    const second = await p.deploy(['--json', '--cache-dir', cacheDir])
    expectExit(second, 0)
    const r2 = resultOf(second).release as string
    expect(readFileSync(join(root, 'releases', r2, 'FROM_CACHE'), 'utf8')).toBe('reused\n')
    expect(readFileSync(join(root, 'releases', r2, 'deps', 'fetched'), 'utf8')).toBe('once\n')
    expect(lastLog(p.logDir)).toContain(
      `cache hit: restored deps from the local cache (${cacheDir}) (key ${keys[0]})`
    )
    // .env files are never cached: the restored deps had none (this run's build wrote a new one)
    expect(readFileSync(join(root, 'releases', r2, 'deps', '.env.local'), 'utf8')).toBe('SECRET=x\n')

    writeFileSync(join(p.dir, 'app', 'deps.lock'), 'left-pad 1.0.1\n')
    p.app({ version: '3.0.0' })
    const third = await p.deploy(['--json', '--cache-dir', cacheDir])
    expectExit(third, 0)
    const r3 = resultOf(third).release as string
    expect(readFileSync(join(root, 'releases', r3, 'FROM_CACHE'), 'utf8')).toBe('fresh\n')
    expect(readdirSync(cacheDir)).toHaveLength(2)
  })

  test('a cached .env file is never written to the cache', async () => {
    const cacheDir = tempDir('build-cache-env-')
    const { p } = await setup('build-local-cache-env', c => ({
      ...c,
      stages: stagesWith(c, { build_local: build }),
      cache: { paths: ['deps'], key_files: ['deps.lock'] }
    }))
    p.app({ version: '1.0.0' })
    writeFileSync(join(p.dir, 'app', 'deps.lock'), 'x\n')
    expectExit(await p.deploy(['--json', '--cache-dir', cacheDir]), 0)
    const [key] = readdirSync(cacheDir)
    const list = snapshot(join(cacheDir, key as string, 'tree')).join('\n')
    expect(list).toContain('deps/fetched')
    expect(list).not.toContain('.env')
  })

  test('cache paths that would hold state or secrets are refused before connecting (exit 2)', async () => {
    for (const [paths, message] of [
      [['.env'], /cache\.paths\[0\]: \.env is an \.env file or under one/],
      [['data/cache'], /cache\.paths\[0\]: data\/cache overlaps the shared path data/],
      [['../outside'], /cache\.paths\[0\]: expected a path relative to the release/],
      [['/etc'], /cache\.paths\[0\]: expected a path relative to the release/]
    ] as const) {
      const { p, root } = await setup('build-local-cache-refused', c => ({
        ...c,
        stages: stagesWith(c, { build_local: 'true' }),
        cache: { paths, key_files: ['deps.lock'] }
      }))
      const r = await p.deploy()
      expectExit(r, 2)
      expect(r.stderr).toMatch(message)
      expect(lockExists(root)).toBe(false)
    }
  })
})

describe('cache: in the Action (the GitHub cache service through @actions/cache; dist/index.js)', () => {
  const repo = fileURLToPath(new URL('../..', import.meta.url))

  test('the first run misses and saves (key, version, the archive of the paths); the second restores it', async () => {
    if (!existsSync(join(repo, 'dist', 'index.js')))
      throw new Error('dist/index.js is missing: run `npm run bundle` first')
    const service = await startCacheService()
    try {
      const build = [
        'if [ -f deps/fetched ]; then echo reused > FROM_CACHE; else mkdir -p deps/sub && echo once > deps/fetched && echo fresh > FROM_CACHE; fi',
        'echo "SECRET=x" > deps/sub/.env'
      ].join('; ')
      const { p, root } = await setup('build-local-action-cache', c => ({
        ...c,
        stages: stagesWith(c, { build_local: build }),
        cache: { paths: ['deps'], key_files: ['deps.lock'] }
      }))
      p.app({ version: '1.0.0' })
      writeFileSync(join(p.dir, 'app', 'deps.lock'), 'left-pad 1.0.0\n')
      const key = `safe-deploy-ledger-${createHash('sha256').update('deps.lock\0left-pad 1.0.0\n\0').digest('hex')}`

      const first = actionStep(p, 'cache-1', service.env)
      const r1 = await spawnAction('index', first.env, p.dir).exited
      expectExit(r1, 0)
      const release1 = first.outputs().release as string
      expect(readFileSync(join(root, 'releases', release1, 'FROM_CACHE'), 'utf8')).toBe('fresh\n')
      expect(service.requests.map(r => r.call)).toEqual([
        'GetCacheEntryDownloadURL',
        'CreateCacheEntry',
        'blob',
        'FinalizeCacheEntryUpload'
      ])
      const [lookup, create, , finalize] = service.requests
      expect(lookup?.body).toMatchObject({ key })
      expect(create?.body).toMatchObject({ key, version: lookup?.body.version })
      expect(finalize?.body).toMatchObject({ key, version: lookup?.body.version })
      expect(r1.stdout).toContain(`cache miss: no entry for key ${key} in the GitHub Actions cache`)
      expect(r1.stdout).toContain(`cache saved: deps to the GitHub Actions cache (key ${key})`)
      // the archive holds the paths, relative, and no .env file
      const entry = service.entries.get(key)
      expect(entry).toBeDefined()
      const tmp = tempDir('cache-archive-')
      mkdirSync(tmp, { recursive: true })
      writeFileSync(join(tmp, 'cache.tzst'), entry?.archive as Buffer)
      const list = execFileSync('tar', ['-tf', join(tmp, 'cache.tzst')], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
      expect(list).toContain('deps/fetched')
      expect(list.every(f => f.startsWith('deps'))).toBe(true)
      expect(list.some(f => f.includes('.env'))).toBe(false)

      p.app({ version: '2.0.0' })
      const second = actionStep(p, 'cache-2', service.env)
      const r2 = await spawnAction('index', second.env, p.dir).exited
      expectExit(r2, 0)
      const release2 = second.outputs().release as string
      expect(readFileSync(join(root, 'releases', release2, 'FROM_CACHE'), 'utf8')).toBe('reused\n')
      expect(r2.stdout).toContain(`cache hit: restored deps from the GitHub Actions cache (key ${key})`)
      expect(service.requests.slice(4).map(r => r.call)).toEqual(['GetCacheEntryDownloadURL', 'blob'])
      expect(service.requests[4]?.body).toMatchObject({ key, version: lookup?.body.version })
    } finally {
      await service.close()
    }
  })

  test('no cache service on the runner: one warning, the build runs without it', async () => {
    if (!existsSync(join(repo, 'dist', 'index.js')))
      throw new Error('dist/index.js is missing: run `npm run bundle` first')
    const { p } = await setup('build-local-action-nocache', c => ({
      ...c,
      stages: stagesWith(c, { build_local: 'mkdir -p deps' }),
      cache: { paths: ['deps'], key_files: ['VERSION'] }
    }))
    p.app({ version: '1.0.0' })
    const step = actionStep(p, 'nocache')
    const r = await spawnAction('index', step.env, p.dir).exited
    expectExit(r, 0)
    expect(r.stdout).toContain(
      '::warning::[build-local] [runner] cache: no cache service on this runner; building without the cache'
    )
  })
})
