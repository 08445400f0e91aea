/**
 * The things that keep a user safe: the lock, host keys, keep_releases, hostile values, several hosts,
 * and the bundled CLI (dist/cli.js) as `npx safe-deploy` runs it.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { httpGet } from './harness/app.js'
import {
  answer,
  cli,
  currentOf,
  historyOf,
  lastLog,
  lockExists,
  project,
  q,
  releasesOf,
  stopApp
} from './support.js'

const repo = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..')
const pidFiles: string[] = []
let a: SshHost
let b: SshHost

beforeAll(async () => {
  a = await startSshd()
  b = await startSshd()
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  await stopAll()
})

function fakeLock(root: string, expiresEpoch: number) {
  const owner = {
    who: 'alice',
    run: 'https://ci.example/run/42',
    pid: 4242,
    runner: 'laptop',
    command: 'deploy',
    token: 'feedface',
    started: '2026-11-21T10:00:00Z',
    expires: 'whenever',
    expires_epoch: expiresEpoch
  }
  mkdirSync(join(root, '.safe-deploy', 'lock'), { recursive: true })
  writeFileSync(join(root, '.safe-deploy', 'lock', 'owner.json'), JSON.stringify(owner) + '\n')
}

describe('the deploy lock', () => {
  test('a deploy while another holds the lock is refused, saying who and since when', async () => {
    const root = a.root('locked')
    const p = await project({ hosts: [a], root })
    pidFiles.push(join(root, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    fakeLock(root, Math.floor(Date.now() / 1000) + 3600)
    const r = await p.deploy()
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('another deploy holds the lock on')
    expect(r.stderr).toContain(
      'alice (https://ci.example/run/42) running `deploy` from laptop since 2026-11-21T10:00:00Z'
    )
    expect(r.stderr).toContain('safe-deploy lock release')
    expect(releasesOf(root)).toEqual([])
    // their lock is theirs: still there, untouched
    expect(JSON.parse(readFileSync(join(root, '.safe-deploy/lock/owner.json'), 'utf8')).token).toBe(
      'feedface'
    )
    const status = await p.run(['lock', 'status'])
    expect(status.stdout).toContain('held by alice')
    const release = await p.run(['lock', 'release'])
    expect(release.stdout).toContain('released the lock')
    expect(lockExists(root)).toBe(false)
  })

  test('an expired lock is taken over with a warning', async () => {
    const root = a.root('expired')
    const p = await project({ hosts: [a], root })
    pidFiles.push(join(root, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    fakeLock(root, Math.floor(Date.now() / 1000) - 10)
    const r = await p.deploy()
    expect(r.code).toBe(0)
    expect(lastLog(p.logDir)).toMatch(/\[preflight\] \S+ took over an expired lock held by alice/)
    expect(lockExists(root)).toBe(false)
  })

  test('two deploys at once: exactly one runs, the other is refused by the lock', async () => {
    const root = a.root('race')
    const p = await project({ hosts: [a], root })
    pidFiles.push(join(root, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    const [r1, r2] = await Promise.all([p.deploy(), p.deploy()])
    const codes = [r1.code, r2.code].sort()
    expect(codes).toEqual([0, 3])
    const refused = r1.code === 3 ? r1 : r2
    expect(refused.stderr).toContain('another deploy holds the lock')
    expect(releasesOf(root)).toHaveLength(1)
    expect(lockExists(root)).toBe(false)
  })
})

describe('host keys', () => {
  test('a wrong host key is refused before anything runs, showing the offered fingerprint', async () => {
    const root = a.root('mitm')
    const p = await project({ hosts: [a], root })
    p.app({ version: '1.0.0' })
    // b's key presented as a's: what a man in the middle looks like
    const wrong = b.knownHostsLine.replace(`[${b.address}]`, `[${a.address}]`)
    const r = await cli(['deploy', '--config', p.configFile], { ...p.env, KNOWN_HOSTS: wrong })
    expect(r.code).toBe(3)
    expect(r.stderr).toContain(`host key for ${a.address}:2222 does not match known_hosts`)
    expect(r.stderr).toContain(a.hostKeyFingerprint)
    expect(r.stderr).toContain('ssh-keyscan -p 2222')
    expect(existsSync(join(root, 'releases'))).toBe(false)
    expect(existsSync(join(root, '.safe-deploy'))).toBe(false)
  })

  test('no known_hosts at all is a config error (exit 2), not a silent trust', async () => {
    const root = a.root('nokh')
    const p = await project({
      hosts: [a],
      root,
      config: c => ({ ...c, ssh: { private_key: 'env:SSH_KEY' } })
    })
    const r = await p.deploy()
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('ssh.known_hosts: host keys are verified')
  })

  test('insecure_skip_host_key_check works and warns loudly', async () => {
    const root = a.root('insecure')
    const p = await project({
      hosts: [a],
      root,
      config: c => ({ ...c, ssh: { private_key: 'env:SSH_KEY', insecure_skip_host_key_check: true } })
    })
    pidFiles.push(join(root, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    const r = await p.deploy()
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('host keys are NOT verified')
  })

  test('fingerprints are accepted instead of known_hosts lines', async () => {
    const root = a.root('fpr')
    const p = await project({
      hosts: [a],
      root,
      config: c => ({ ...c, ssh: { private_key: 'env:SSH_KEY', fingerprints: [a.hostKeyFingerprint] } })
    })
    const r = await p.run(['releases'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('(no releases)')
  })
})

test('keep_releases prunes the oldest, never current or previous', async () => {
  const root = a.root('prune')
  const p = await project({ hosts: [a], root, config: c => ({ ...c, keep_releases: 2 }) })
  pidFiles.push(join(root, 'shared', 'app.pid'))
  const made: string[] = []
  for (const v of ['1.0.0', '2.0.0', '3.0.0', '4.0.0']) {
    p.app({ version: v })
    const r = await p.deploy(['--json'])
    expect(r.code).toBe(0)
    made.push((JSON.parse(r.stdout) as { release: string }).release)
  }
  expect(releasesOf(root)).toEqual(made.slice(-2))
  expect(currentOf(root)).toBe(`releases/${made[3]}`)
  expect(lastLog(p.logDir)).toContain(`pruned 1 old release(s): ${made[1]}`)
})

test('hostile values in paths, shared names, env values and the actor reach the host as literals', async () => {
  const marker = join(tempDir('pwned-'), 'pwned')
  const hostile = `it's "quoted" $(touch ${marker}) \`touch ${marker}\` ; touch ${marker}\nnew line $HOME *`
  const root = join(a.dir, 'srv', `we'ird $(touch ${marker}) \`x\` dir`)
  const sharedName = 'conf $(id) `id` \'x\' "y".env'
  const p = await project({
    hosts: [a],
    root,
    envExtra: { HOSTILE: hostile, GITHUB_ACTOR: `mallory"; touch ${marker}; echo "` },
    config: c => ({
      ...c,
      shared: { files: ['.env', sharedName], dirs: ['logs', 'data dir $(x)'] },
      env: { ...(c.env as object), HOSTILE: 'env:HOSTILE', PLAIN: hostile },
      stages: {
        build: 'printf "%s" "$HOSTILE" > hostile.txt; printf "%s" "$PLAIN" > plain.txt',
        restart: 'bin/restart'
      }
    })
  })
  pidFiles.push(join(root, 'shared', 'app.pid'))
  a.run(`mkdir -p ${q(join(root, 'shared'))} && printf 'x' > ${q(join(root, 'shared', sharedName))}`)
  p.app({ version: '1.0.0' })
  const r = await p.deploy(['--json'])
  expect(r.stderr).toContain('DEPLOYMENT SUCCESS')
  expect(r.code).toBe(0)
  const release = (JSON.parse(r.stdout) as { release: string }).release
  const rel = join(root, 'releases', release)
  expect(readFileSync(join(rel, 'hostile.txt'), 'utf8')).toBe(hostile)
  expect(readFileSync(join(rel, 'plain.txt'), 'utf8')).toBe(hostile)
  expect(readFileSync(join(rel, sharedName), 'utf8')).toBe('x')
  expect(existsSync(join(root, 'shared', 'data dir $(x)'))).toBe(true)
  expect(historyOf(root)[0]?.actor).toBe(`mallory"; touch ${marker}; echo "`)
  expect(existsSync(marker)).toBe(false)
  // the secret from env: is redacted in the log; the inline one is not a secret
  const log = lastLog(p.logDir)
  expect(log).not.toContain(hostile.split('\n')[0])
})

test('two hosts: every host gets the release and switches; {host} in the URL checks each', async () => {
  // one client key for both hosts, as in real life
  b.run(`cat ${q(`${a.privateKeyFile}.pub`)} >> ${q(join(b.dir, 'etc', 'authorized_keys'))}`)
  // both "hosts" are this machine, so each gets its own deploy root (hosts[].path)
  const roots = [a.root('multi'), b.root('multi')]
  const p = await project({
    hosts: [a, b],
    root: roots[0] as string,
    config: c => ({
      ...c,
      hosts: [a, b].map((h, i) => ({ address: h.address, port: h.port, user: 'root', path: roots[i] })),
      env: { PORT: (c.env as { PORT: string }).PORT, PID_FILE: 'app.pid' },
      stages: { restart: 'HOST=$SAFE_DEPLOY_HOST_ADDRESS PID_FILE=$SAFE_DEPLOY_SHARED/app.pid bin/restart' },
      verify: {
        http: {
          url: `http://{host}:${(c.env as { PORT: string }).PORT}/health`,
          retries: 10,
          interval: '300ms'
        }
      }
    })
  })
  for (const [i, h] of [a, b].entries()) {
    h.run(`mkdir -p ${q(`${roots[i]}/shared`)} && touch ${q(`${roots[i]}/shared/.env`)}`)
    pidFiles.push(join(roots[i] as string, 'shared', 'app.pid'))
  }
  p.app({ version: '1.0.0' })
  const r = await p.deploy(['--json'])
  expect(r.stderr).toContain('DEPLOYMENT SUCCESS')
  const result = JSON.parse(r.stdout) as { release: string; hosts: string[] }
  expect(result.hosts).toEqual([`${a.address}:2222`, `${b.address}:2222`])
  for (const root of roots) expect(currentOf(root)).toBe(`releases/${result.release}`)
  const log = lastLog(p.logDir)
  expect(log).toContain(`[deploy] [${a.address}:2222] uploaded`)
  expect(log).toContain(`[deploy] [${b.address}:2222] uploaded`)
  expect(log).toContain(`GET http://${a.address}:${p.port}/health: HTTP 200`)
  expect(log).toContain(`GET http://${b.address}:${p.port}/health: HTTP 200`)
  for (const h of [a, b]) expect((await httpGet(`http://${h.address}:${p.port}/`)).body).toBe('version 1.0.0')
})

test('the bundled CLI (dist/cli.js) deploys over SSH as `npx safe-deploy deploy` does', async () => {
  const root = a.root('bundled')
  const p = await project({ hosts: [a], root })
  pidFiles.push(join(root, 'shared', 'app.pid'))
  p.app({ version: '9.9.9' })
  const r = spawnSync(process.execPath, [join(repo, 'dist', 'cli.js'), 'deploy', '--config', p.configFile], {
    cwd: p.dir,
    env: p.env,
    encoding: 'utf8',
    timeout: 120_000
  })
  expect(r.stderr).toContain('DEPLOYMENT SUCCESS')
  expect(r.status).toBe(0)
  expect(await answer(p.port)).toBe('version 9.9.9')
})
