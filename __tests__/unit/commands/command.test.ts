import { spawn } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { END_OF_SCRIPT, REMOTE_SHELL, script, withEnv } from '../../../src/commands/command.js'
import { cleanup, hostileValues, runEvalIn, runRemote, shells, tempDir } from '../helpers/shell.js'

describe('REMOTE_SHELL', () => {
  test('reads the script from stdin and evaluates it: nothing of it is in argv', () => {
    expect(REMOTE_SHELL).toBe(
      `sh -c 's=$(sed -n "/^#safe-deploy:end-of-script\\$/{p;q;};p"); case $s in *"#safe-deploy:end-of-script") exec 3<&0; { cat <&3 >/dev/null 2>&1; kill -KILL 0; } >/dev/null 2>&1 & w=$!; (eval "\${s%"#safe-deploy:end-of-script"}") </dev/null 3<&-; r=$?; kill $w 2>/dev/null; exit $r;; esac; eval "$s"'`
    )
    expect(END_OF_SCRIPT).toBe('#safe-deploy:end-of-script')
  })

  test('runs a multi-line script from stdin, keeping state between lines', async () => {
    const r = await runRemote('x=1\ny=$((x + 1))\nprintf "%s-%s" "$x" "$y"\nexit 7')
    expect(r).toEqual({ code: 7, stdout: '1-2', stderr: '' })
  })

  describe('a script ending in END_OF_SCRIPT, stdin held open (as runOn sends it)', () => {
    let dir: string
    beforeAll(() => {
      dir = tempDir('guard')
    })
    afterAll(() => cleanup(dir))

    /** Starts REMOTE_SHELL with the script and END_OF_SCRIPT on stdin, which stays open. */
    function start(body: string) {
      const child = spawn('/bin/sh', ['-c', REMOTE_SHELL], { cwd: dir, stdio: 'pipe', detached: true })
      let stdout = ''
      let stderr = ''
      child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
      child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
      child.stdin.on('error', () => undefined)
      child.stdin.write(`${body}\n${END_OF_SCRIPT}\n`)
      const done = new Promise<{ code: number | null; stdout: string; stderr: string }>(resolve =>
        child.on('close', code => {
          child.stdin.end()
          resolve({ code, stdout, stderr })
        })
      )
      return { child, done }
    }
    const until = async (what: () => boolean) => {
      for (let i = 0; i < 200 && !what(); i++) await new Promise(r => setTimeout(r, 25))
    }

    test('runs to its end without waiting for EOF: exit code, output, traps; stdin of the script is empty', async () => {
      const { done } = start(`trap 'echo trapped' EXIT; read x; echo "read=$x"; echo err >&2; exit 3`)
      expect(await done).toEqual({ code: 3, stdout: 'read=\ntrapped\n', stderr: 'err\n' })
    })

    test('stdin ending before the script does (interrupt, lost connection) kills it', async () => {
      const { child, done } = start(`: > started; sleep 2; : > finished`)
      await until(() => existsSync(join(dir, 'started')))
      child.stdin.end()
      const r = await done
      expect(r.code).not.toBe(0)
      await new Promise(resolve => setTimeout(resolve, 2500))
      expect(existsSync(join(dir, 'finished'))).toBe(false)
    })

    test('what the script started in the background survives its normal end', async () => {
      const { done } = start(`(sleep 1; : > background) >/dev/null 2>&1 &`)
      expect((await done).code).toBe(0)
      await until(() => existsSync(join(dir, 'background')))
      expect(existsSync(join(dir, 'background'))).toBe(true)
    })
  })
})

describe('script', () => {
  test('joins lines, dropping false and undefined but keeping empty strings', () => {
    expect(script('a', false, undefined, 'b', '')).toBe('a\nb\n')
    expect(script()).toBe('')
  })
})

describe('withEnv', () => {
  test('without env the script is returned unchanged', () => {
    expect(withEnv({ label: 'x', script: 'echo hi' })).toBe('echo hi')
    expect(withEnv({ label: 'x', script: 'echo hi', env: {} })).toBe('echo hi')
  })

  test('exports each variable, quoted, before the script', () => {
    expect(withEnv({ label: 'x', script: 'echo "$A"', env: { A: '1', B: 'x y', C: "it's" } })).toBe(
      `export A=1\nexport B='x y'\nexport C='it'\\''s'\necho "$A"`
    )
  })

  test('a NUL byte in a value is refused before anything is sent', () => {
    expect(() => withEnv({ label: 'x', script: 'true', env: { A: 'a\0b' } })).toThrow(/NUL/)
  })

  describe('hostile values reach the script literally', () => {
    let dir: string
    let marker: string
    beforeAll(() => {
      dir = tempDir('withenv')
      marker = join(dir, 'pwned')
    })
    afterAll(() => cleanup(dir))

    test('through REMOTE_SHELL, one value at a time', async () => {
      for (const v of hostileValues(marker)) {
        const r = await runRemote(withEnv({ label: 'x', script: 'printf %s "$V"', env: { V: v } }), {
          cwd: dir
        })
        expect({ v, ...r }).toEqual({ v, code: 0, stdout: v, stderr: '' })
      }
      expect(existsSync(marker)).toBe(false)
      expect(readdirSync(dir)).toEqual([])
    })

    test.each(shells())('through %s -c \'eval "$(cat)"\', all values at once', async shell => {
      const values = hostileValues(marker)
      const env = Object.fromEntries(values.map((v, i) => [`V${i}`, v]))
      const body = values.map((_, i) => `printf '%s\\0' "$V${i}"`).join('\n')
      const r = await runEvalIn(shell, withEnv({ label: 'x', script: body, env }), { cwd: dir })
      expect(r.code).toBe(0)
      expect(r.stderr).toBe('')
      expect(r.stdout.split('\0').slice(0, -1)).toEqual(values)
      expect(readdirSync(dir)).toEqual([])
    })

    test('variables are exported to child processes, not just set', async () => {
      const v = `a'b $(touch ${marker})\nc`
      const r = await runRemote(
        withEnv({ label: 'x', script: `/bin/sh -c 'printf %s "$V"'`, env: { V: v } }),
        { cwd: dir }
      )
      expect(r.stdout).toBe(v)
      expect(existsSync(marker)).toBe(false)
    })

    test('a value that names another variable is not expanded', async () => {
      const r = await runRemote(
        withEnv({ label: 'x', script: 'printf "%s|%s" "$A" "$B"', env: { A: 'secret', B: '$A ${A}' } })
      )
      expect(r.stdout).toBe('secret|$A ${A}')
    })
  })
})
