/** Self-test of the e2e harness: real sshd hosts on loopback, real ssh logins, the app fixture. */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { httpGet, isRunning, readPid, stopApp, waitFor, writeApp } from './harness/app.js'
import { CORE_PACKAGES, missingPackages } from './harness/packages.js'
import {
  freePort,
  isPortOpen,
  isProcessAlive,
  ssh,
  sshArgs,
  startSshd,
  stopAll,
  tempDir,
  type SshHost
} from './harness/sshd.js'

let a: SshHost
let b: SshHost
const pidFiles: string[] = []

beforeAll(async () => {
  ;[a, b] = await Promise.all([startSshd(), startSshd()])
})

afterAll(async () => {
  for (const pidFile of pidFiles) await stopApp(pidFile)
  await stopAll()
})

describe('packages', () => {
  test('globalSetup installed every core package', () => {
    expect(missingPackages(CORE_PACKAGES)).toEqual([])
  })
})

describe('sshd hosts', () => {
  test('each host has its own loopback address, host key and deploy dir', () => {
    for (const host of [a, b]) {
      expect(host.address).toMatch(/^127\.0\.\d{1,3}\.\d{1,3}$/)
      expect(host.address).not.toBe('127.0.0.1')
      expect(host.port).toBe(2222)
      expect(host.user).toBe('root')
      expect(host.privateKey).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n/)
      expect(readFileSync(host.privateKeyFile, 'utf8')).toBe(host.privateKey)
      expect(host.knownHostsLine).toMatch(
        new RegExp(`^\\[${host.address.replace(/\./g, '\\.')}\\]:${host.port} ssh-ed25519 AAAA[\\w+/=]+$`)
      )
      // The fingerprint matches the key in the known_hosts line, computed independently.
      const fromKnownHosts = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', host.knownHostsFile], {
        encoding: 'utf8'
      })
      expect(host.hostKeyFingerprint).toMatch(/^SHA256:[\w+/]{43}$/)
      expect(fromKnownHosts).toContain(host.hostKeyFingerprint)
      expect(host.root('app')).toBe(path.join(host.dir, 'srv', 'app'))
      expect(existsSync(host.root('app'))).toBe(false)
      expect(host.run('echo "hi $((6 * 7))"')).toBe('hi 42\n')
      expect(() => host.run('echo oops >&2; exit 3')).toThrow(/exit 3[\s\S]*oops/)
      expect(existsSync(host.logFile)).toBe(true)
      expect(isProcessAlive(host.pid)).toBe(true)
    }
    expect(a.address).not.toBe(b.address)
    expect(a.hostKeyFingerprint).not.toBe(b.hostKeyFingerprint)
    expect(a.privateKey).not.toBe(b.privateKey)
    expect(a.dir).not.toBe(b.dir)
  })

  test('both hosts accept a real ssh login with strict host key checking', () => {
    for (const host of [a, b]) {
      // The plain command from the harness docs.
      const plain = spawnSync(
        'ssh',
        [
          '-i',
          host.privateKeyFile,
          '-o',
          `UserKnownHostsFile=${host.knownHostsFile}`,
          '-o',
          'StrictHostKeyChecking=yes',
          '-o',
          'BatchMode=yes',
          '-p',
          String(host.port),
          `root@${host.address}`,
          'true'
        ],
        { encoding: 'utf8', timeout: 30_000 }
      )
      expect({ status: plain.status, stderr: plain.stderr }).toEqual({ status: 0, stderr: '' })

      const res = ssh(host, 'echo "$(id -un) $((6 * 7))"')
      expect({ status: res.status, stdout: res.stdout }).toEqual({ status: 0, stdout: 'root 42\n' })
    }
    expect(readFileSync(a.logFile, 'utf8')).toMatch(/Accepted publickey for root/)
  })

  test('ssh refuses a wrong or missing known_hosts entry, and a key that is not authorized', () => {
    const dir = tempDir('safe-deploy-e2e-kh-')
    // b's host key under a's address: a's real key does not match.
    const wrong = path.join(dir, 'wrong')
    writeFileSync(wrong, `[${a.address}]:${a.port} ${b.knownHostsLine.split(' ').slice(1).join(' ')}\n`)
    const mismatch = ssh(a, 'true', { knownHostsFile: wrong })
    expect(mismatch.status).toBe(255)
    expect(mismatch.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED/)
    expect(mismatch.stderr).toMatch(/Host key verification failed/)

    const empty = path.join(dir, 'empty')
    writeFileSync(empty, '')
    const unknown = ssh(a, 'true', { knownHostsFile: empty })
    expect(unknown.status).toBe(255)
    expect(unknown.stderr).toMatch(/Host key verification failed/)

    // b's client key is not authorized on a.
    const args = sshArgs(a).map(arg => (arg === a.privateKeyFile ? b.privateKeyFile : arg))
    const denied = spawnSync('ssh', [...args, 'true'], { encoding: 'utf8', timeout: 30_000 })
    expect(denied.status).toBe(255)
    expect(denied.stderr).toMatch(/Permission denied \(publickey\)/)
  })

  test('per-command ssh latency (10 x `ssh ... true`)', () => {
    const times: number[] = []
    for (let i = 0; i < 10; i++) {
      const started = process.hrtime.bigint()
      const res = ssh(a, 'true')
      times.push(Number(process.hrtime.bigint() - started) / 1e6)
      expect(res.status).toBe(0)
    }
    const mean = times.reduce((x, y) => x + y, 0) / times.length
    console.log(
      `ssh latency: mean ${mean.toFixed(1)} ms, min ${Math.min(...times).toFixed(1)} ms, ` +
        `max ${Math.max(...times).toFixed(1)} ms over ${times.length} runs of \`ssh root@${a.address} true\``
    )
    // Sanity bound: multi-second logins would mean e.g. reverse DNS lookups or entropy starvation.
    expect(mean).toBeLessThan(5000)
  })

  test('an explicit port is honoured', async () => {
    const port = await freePort()
    const host = await startSshd({ port })
    expect(host.port).toBe(port)
    expect(host.knownHostsLine.startsWith(`[${host.address}]:${port} `)).toBe(true)
    expect(ssh(host, 'echo up').stdout).toBe('up\n')
    await host.stop()
    expect(await isPortOpen(host.address, port)).toBe(false)
  })
})

describe('app fixture', () => {
  test('bin/restart starts the app, a second restart replaces it, stopApp stops it', async () => {
    const appRoot = a.root('app')
    const pidFile = path.join(appRoot, 'shared', 'app.pid')
    const appLog = path.join(appRoot, 'shared', 'app.log')
    pidFiles.push(pidFile)
    const v1 = path.join(appRoot, 'releases', '1')
    const v2 = path.join(appRoot, 'releases', '2')
    writeApp(v1, { version: '1.0.0' })
    writeApp(v2, { version: '2.0.0' })
    expect(readFileSync(path.join(v1, 'VERSION'), 'utf8').trim()).toBe('1.0.0')
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    expect((await httpGet(`${url}/health`)).status).toBe(0)

    // Missing PORT: refuses with a message.
    const noPort = spawnSync(path.join(v1, 'bin', 'restart'), [], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, PID_FILE: pidFile }
    })
    expect(noPort.status).not.toBe(0)
    expect(noPort.stderr).toMatch(/PORT is not set/)
    expect(existsSync(pidFile)).toBe(false)

    // First start, locally.
    const first = spawnSync(path.join(v1, 'bin', 'restart'), [], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, PORT: String(port), PID_FILE: pidFile, APP_LOG: appLog },
      timeout: 10_000
    })
    expect({ status: first.status, stderr: first.stderr }).toEqual({ status: 0, stderr: '' })
    const pid1 = readPid(pidFile)
    expect(pid1).toBeDefined()
    expect(isRunning(pid1!)).toBe(true)
    const health1 = await waitFor('v1 /health', async () => {
      const r = await httpGet(`${url}/health`)
      return r.status === 200 ? r : undefined
    })
    expect(health1.body).toBe('ok 1.0.0')
    // Once node runs (nohup and setsid exec'd into it, same pid), the app leads its own session
    // (field 6 of /proc/PID/stat), detached from the caller.
    expect(readFileSync(`/proc/${pid1}/cmdline`, 'utf8').split('\0').slice(0, 2)).toEqual([
      process.execPath,
      'server.js'
    ])
    const stat1 = readFileSync(`/proc/${pid1}/stat`, 'utf8')
    expect(stat1.slice(stat1.lastIndexOf(')') + 2).split(' ')[3]).toBe(String(pid1))
    expect(await httpGet(`${url}/`)).toEqual({ status: 200, body: 'version 1.0.0' })
    expect((await httpGet(`${url}/nope`)).status).toBe(404)

    // Second restart over ssh: it must return at once although the app keeps running (fds redirected).
    const started = Date.now()
    const second = ssh(a, `PORT=${port} PID_FILE='${pidFile}' APP_LOG='${appLog}' '${v2}/bin/restart'`, {
      timeoutMs: 20_000
    })
    const elapsed = Date.now() - started
    expect({ status: second.status, stderr: second.stderr, error: second.error }).toEqual({
      status: 0,
      stderr: '',
      error: undefined
    })
    expect(elapsed).toBeLessThan(8000)
    const pid2 = readPid(pidFile)
    expect(pid2).toBeDefined()
    expect(pid2).not.toBe(pid1)
    expect(isRunning(pid1!)).toBe(false)
    expect(isRunning(pid2!)).toBe(true)
    const health2 = await waitFor('v2 /health', async () => {
      const r = await httpGet(`${url}/health`)
      return r.status === 200 && r.body === 'ok 2.0.0' ? r : undefined
    })
    expect(health2.body).toBe('ok 2.0.0')
    expect(readFileSync(appLog, 'utf8')).toMatch(/version 2\.0\.0/)

    await stopApp(pidFile)
    expect(isRunning(pid2!)).toBe(false)
    const down = await httpGet(`${url}/health`)
    expect(down.status).toBe(0)
    expect(down.error).toBe('ECONNREFUSED')
    await stopApp(pidFile) // no-op once stopped
  })

  test('an unhealthy app answers 500, a crashing app exits', async () => {
    const dir = tempDir('safe-deploy-e2e-app-')
    const pidFile = path.join(dir, 'app.pid')
    pidFiles.push(pidFile)
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const env = { PATH: process.env.PATH, PORT: String(port), PID_FILE: pidFile }

    writeApp(path.join(dir, 'sick'), { version: '3', healthy: false })
    expect(spawnSync(path.join(dir, 'sick', 'bin', 'restart'), [], { env }).status).toBe(0)
    const sick = await waitFor('unhealthy /health', async () => {
      const r = await httpGet(`${url}/health`)
      return r.status !== 0 ? r : undefined
    })
    expect(sick).toEqual({ status: 500, body: 'unhealthy 3' })
    expect(await httpGet(`${url}/`)).toEqual({ status: 200, body: 'version 3' })

    writeApp(path.join(dir, 'crash'), { version: '4', crashAfterMs: 1500 })
    expect(spawnSync(path.join(dir, 'crash', 'bin', 'restart'), [], { env }).status).toBe(0)
    const pid = readPid(pidFile)!
    const up = await waitFor('crashing app up', async () => {
      const r = await httpGet(`${url}/health`)
      return r.status === 200 ? r : undefined
    })
    expect(up.body).toBe('ok 4')
    await waitFor('crashing app to exit', () => !isRunning(pid), 10_000)
    expect((await httpGet(`${url}/health`)).status).toBe(0)
  })
})

describe('stop', () => {
  /** Starts `ssh host 'echo started; read x'` and resolves once the remote command runs (it ends on EOF). */
  async function openSession(host: SshHost): Promise<ChildProcess> {
    const child = spawn('ssh', [...sshArgs(host), 'echo started; read x'], {
      stdio: ['pipe', 'pipe', 'pipe']
    })
    let out = ''
    child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()))
    await waitFor('ssh session to start', () => out.includes('started'))
    return child
  }
  const exited = (child: ChildProcess): Promise<number | null> =>
    child.exitCode !== null
      ? Promise.resolve(child.exitCode)
      : new Promise(resolve => child.once('exit', resolve))

  test('stop() closes the port and ends sshd; open sessions live on until their client leaves', async () => {
    const session = await openSession(b)
    await b.stop()
    expect(await isPortOpen(b.address, b.port)).toBe(false)
    expect(isProcessAlive(b.pid)).toBe(false)
    const res = ssh(b, 'true', { timeoutMs: 15_000 })
    expect(res.status).toBe(255)
    await b.stop() // idempotent
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(session.exitCode).toBeNull()
    session.kill()
    await exited(session)
  })

  test('stop({ killSessions: true }) also ends open sessions', async () => {
    const host = await startSshd()
    const session = await openSession(host)
    await host.stop({ killSessions: true })
    expect(await isPortOpen(host.address, host.port)).toBe(false)
    expect(await exited(session)).toBe(255)
  })

  test('a watchdog stops the sshd of a process that died without stopping it', async () => {
    const dir = tempDir('safe-deploy-e2e-owner-')
    const script = path.join(dir, 'owner.mts')
    const here = path.dirname(fileURLToPath(import.meta.url))
    const sshdModule = path.join(here, 'harness', 'sshd.ts')
    const repoRoot = path.resolve(here, '..', '..')
    writeFileSync(
      script,
      `import { startSshd } from ${JSON.stringify(sshdModule)}\n` +
        `const h = await startSshd()\n` +
        `console.log(JSON.stringify({ pid: h.pid, address: h.address, port: h.port, log: h.logFile }))\n` +
        `process.kill(process.pid, 'SIGKILL')\n`
    )
    // Same JEST_WORKER_ID, so its first candidate address is a's, which is taken and must be skipped.
    const owner = spawnSync(process.execPath, ['--import', 'tsx', script], {
      cwd: repoRoot, // where `--import tsx` resolves from; other test files may chdir this worker away
      encoding: 'utf8',
      timeout: 60_000
    })
    expect({ signal: owner.signal, stderr: owner.signal === 'SIGKILL' ? '' : owner.stderr }).toEqual({
      signal: 'SIGKILL',
      stderr: ''
    })
    const started = JSON.parse(owner.stdout.trim().split('\n').pop() ?? '{}') as {
      pid: number
      address: string
      port: number
      log: string
    }
    expect(started.pid).toBeGreaterThan(0)
    expect(started.address).not.toBe(a.address)
    await waitFor(
      'the orphaned sshd to be stopped',
      async () => !isProcessAlive(started.pid) && !(await isPortOpen(started.address, started.port)),
      10_000
    )
    expect(readFileSync(started.log, 'utf8')).toMatch(/Received signal 15; terminating/)
  })
})
