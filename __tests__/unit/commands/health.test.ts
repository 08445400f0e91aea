import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, symlinkSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { httpProbe, httpProbeLoop, parseProbe, parseProbeLoop } from '../../../src/commands/health.js'
import { cleanup, run, runRemote, tempDir } from '../helpers/shell.js'

describe('parseProbe', () => {
  test('the last HTTP_STATUS= line is the status; what comes before is the body', () => {
    expect(parseProbe('ok 1.0.0\nHTTP_STATUS=200\n')).toEqual({ status: 200, body: 'ok 1.0.0' })
    expect(parseProbe('a\nb\n\nHTTP_STATUS=503')).toEqual({ status: 503, body: 'a\nb\n' })
    expect(parseProbe('body says HTTP_STATUS=200\nHTTP_STATUS=500\n')).toEqual({
      status: 500,
      body: 'body says HTTP_STATUS=200'
    })
  })

  test('nothing answered: 000 is status 0 with an empty body', () => {
    expect(parseProbe('\nHTTP_STATUS=000\n')).toEqual({ status: 0, body: '' })
  })

  test('no status line at all: status 0, the output as body', () => {
    expect(parseProbe('curl: (7) failed')).toEqual({ status: 0, body: 'curl: (7) failed' })
    expect(parseProbe('HTTP_STATUS=abc')).toEqual({ status: 0, body: '' })
  })
})

describe('httpProbe', () => {
  test('label and timeout: whole seconds, at least 1', () => {
    const p = httpProbe('http://127.0.0.1:18080/health', 5000)
    expect(p.label).toBe('GET http://127.0.0.1:18080/health')
    expect(p.script.split('\n')[0]).toBe('url=http://127.0.0.1:18080/health')
    expect(p.script).toContain('--max-time 5 "$url"')
    expect(p.script).toContain('-T 5 -t 1 "$url"')
    expect(httpProbe('http://x/', 1).script).toContain('--max-time 1 ')
    expect(httpProbe('http://x/', 1500).script).toContain('--max-time 2 ')
    expect(httpProbe("http://x/?q='a b'", 1000).script.split('\n')[0]).toBe(`url='http://x/?q='\\''a b'\\'''`)
  })

  describe('against a real HTTP server', () => {
    let server: http.Server
    let base: string
    let closedPort: number
    let dir: string
    const seen: string[] = []

    beforeAll(async () => {
      dir = tempDir('health')
      server = http.createServer((req, res) => {
        seen.push(req.url ?? '')
        if (req.url === '/health') {
          res.writeHead(200, { 'content-type': 'text/plain' })
          res.end('ok 1.2.3')
        } else if (req.url === '/down') {
          res.writeHead(503)
          res.end('unhealthy 1.2.3\nsecond line\n')
        } else if (req.url === '/slow') {
          setTimeout(() => {
            res.writeHead(200)
            res.end('too late')
          }, 3000)
        } else {
          res.writeHead(404)
          res.end('not found')
        }
      })
      await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const other = http.createServer()
      await new Promise<void>(resolve => other.listen(0, '127.0.0.1', resolve))
      closedPort = (other.address() as AddressInfo).port
      await new Promise<void>(resolve => other.close(() => resolve()))
    })
    afterAll(async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
      cleanup(dir)
    })

    const probe = async (url: string, timeoutMs = 5000, env?: NodeJS.ProcessEnv) => {
      const r = await (env
        ? run('/bin/sh', ['-c', 'eval "$(cat)"'], { input: httpProbe(url, timeoutMs).script, env, cwd: dir })
        : runRemote(httpProbe(url, timeoutMs).script, { cwd: dir }))
      return { code: r.code, stderr: r.stderr, stdout: r.stdout, ...parseProbe(r.stdout) }
    }

    test('200 with the body', async () => {
      const r = await probe(`${base}/health`)
      expect(r.code).toBe(0)
      expect(r.stdout).toBe('ok 1.2.3\nHTTP_STATUS=200\n')
      expect({ status: r.status, body: r.body }).toEqual({ status: 200, body: 'ok 1.2.3' })
    })

    test('503 with a multi-line body', async () => {
      const r = await probe(`${base}/down`)
      expect({ status: r.status, body: r.body }).toEqual({
        status: 503,
        body: 'unhealthy 1.2.3\nsecond line\n'
      })
    })

    test('a closed port answers HTTP_STATUS=000 and the script still succeeds', async () => {
      const r = await probe(`http://127.0.0.1:${closedPort}/health`)
      expect(r.code).toBe(0)
      expect(r.stdout).toMatch(/HTTP_STATUS=000\n$/)
      expect({ status: r.status, body: r.body }).toEqual({ status: 0, body: '' })
    })

    test('an answer slower than the timeout counts as none', async () => {
      const started = Date.now()
      const r = await probe(`${base}/slow`, 1000)
      expect(Date.now() - started).toBeLessThan(2900)
      expect(r.status).toBe(0)
    })

    test('a hostile URL is fetched as it is and runs nothing', async () => {
      // no braces or brackets: curl globs those (see the report); $IFS splits into `touch PWNED` if evaluated
      const path = "/q?a='b'&c=$(touch$IFS'PWNED')&d=`touch$IFS'PWNED'`;touch$IFS'PWNED'&e=\"$HOME\""
      const r = await probe(`${base}${path}`)
      expect(r.status).toBe(404)
      expect(seen).toContain(path)
      expect(existsSync(join(dir, 'PWNED'))).toBe(false)
    })

    describe('with wget only (no curl on PATH)', () => {
      let bin: string
      const hasWget = spawnSync('/bin/sh', ['-c', 'command -v wget']).status === 0

      beforeAll(() => {
        bin = join(dir, 'bin-wget')
        mkdirSync(bin)
        for (const tool of ['cat', 'sed', 'tail', 'rm', 'mktemp', 'wget']) {
          const found = spawnSync('/bin/sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim()
          if (found) symlinkSync(found, join(bin, tool))
        }
      })

      test('wget is installed here, so this branch is tested', () => {
        expect(hasWget).toBe(true)
      })

      test('200 with the body', async () => {
        const r = await probe(`${base}/health`, 5000, { PATH: bin })
        expect(r.stderr).toBe('')
        expect({ status: r.status, body: r.body }).toEqual({ status: 200, body: 'ok 1.2.3' })
      })

      test('503 is reported as 503', async () => {
        expect((await probe(`${base}/down`, 5000, { PATH: bin })).status).toBe(503)
      })

      test('a closed port is 000', async () => {
        const r = await probe(`http://127.0.0.1:${closedPort}/`, 2000, { PATH: bin })
        expect(r.stdout).toBe('\nHTTP_STATUS=000\n')
        expect(r.status).toBe(0)
      })
    })

    test('neither curl nor wget: exit 127 with a message that says what to do', async () => {
      const bin = join(dir, 'bin-none')
      mkdirSync(bin)
      symlinkSync(
        spawnSync('/bin/sh', ['-c', 'command -v cat'], { encoding: 'utf8' }).stdout.trim(),
        join(bin, 'cat')
      )
      const r = await probe(`${base}/health`, 5000, { PATH: bin })
      expect(r.code).toBe(127)
      expect(r.stderr).toBe(
        'neither curl nor wget is installed on this host; install one or use verify.http.from: runner\n'
      )
      expect(r.stdout).toBe('')
    })
  })
})

describe('httpProbeLoop: the retry loop runs on the host', () => {
  let server: http.Server
  let port: number
  let hits = 0
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      hits++
      // unhealthy for the first two requests, then healthy with a version in the body
      const ok = hits > 2
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' })
      res.end(ok ? 'ok v2' : 'starting\nplease wait')
    })
    await new Promise<void>(r => server.listen(0, '127.0.0.1', () => r()))
    port = (server.address() as AddressInfo).port
  })
  afterAll(() => new Promise<void>(r => server.close(() => r())))

  const loop = (extra: Partial<Parameters<typeof httpProbeLoop>[0]> = {}) =>
    httpProbeLoop({
      url: `http://127.0.0.1:${port}/health`,
      timeoutMs: 2000,
      headers: {},
      retries: 5,
      intervalMs: 50,
      expectStatus: 200,
      ...extra
    })

  test('passes on the third attempt, reporting each failed one on stderr', async () => {
    hits = 0
    const r = await runRemote(loop({ contains: 'v2' }).script)
    expect(r.code).toBe(0)
    expect(parseProbeLoop(r.stdout)).toEqual({ status: 200, body: 'ok v2', attempts: 3, passed: true })
    const lines = r.stderr.trim().split('\n')
    expect(lines).toEqual([
      `GET http://127.0.0.1:${port}/health: HTTP 503 "starting please wait"; attempt 1/5, retrying in 0.05 s`,
      `GET http://127.0.0.1:${port}/health: HTTP 503 "starting please wait"; attempt 2/5, retrying in 0.05 s`,
      `GET http://127.0.0.1:${port}/health: HTTP 200 (attempt 3/5)`
    ])
  })

  test('a body without the wanted text fails after every attempt', async () => {
    hits = 10
    const r = await runRemote(loop({ contains: 'v3', retries: 2 }).script)
    expect(parseProbeLoop(r.stdout)).toEqual({ status: 200, body: 'ok v2', attempts: 2, passed: false })
  })

  test('a closed port is status 0 after all attempts', async () => {
    const closed = http.createServer()
    await new Promise<void>(r => closed.listen(0, '127.0.0.1', () => r()))
    const p = (closed.address() as AddressInfo).port
    await new Promise<void>(r => closed.close(() => r()))
    const r = await runRemote(loop({ url: `http://127.0.0.1:${p}/`, retries: 2 }).script)
    expect(parseProbeLoop(r.stdout)).toMatchObject({ status: 0, attempts: 2, passed: false })
    expect(r.stderr).toContain('no answer (connection refused or timed out); attempt 1/2')
  })

  test('a hostile wanted text is matched literally, not as a pattern or code', async () => {
    hits = 10
    const r = await runRemote(loop({ contains: '*$(touch /tmp/never-probe)*', retries: 1 }).script)
    expect(parseProbeLoop(r.stdout).passed).toBe(false)
    expect(existsSync('/tmp/never-probe')).toBe(false)
  })
})
