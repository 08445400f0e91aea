/**
 * The POSIX shell dialect (src/commands/dialect.ts): its quoting is `sh()`, and what it builds runs in a real
 * /bin/sh the way a host runs it (REMOTE_SHELL with the script on stdin). The end-of-script watcher itself is
 * tested in command.test.ts, in a process group of its own (it kills its group when stdin ends).
 */
import { describe, expect, test } from '@jest/globals'
import { posix } from '../../../src/commands/dialect.js'
import { END_OF_SCRIPT, REMOTE_SHELL, script, withEnv } from '../../../src/commands/command.js'
import { sh } from '../../../src/commands/quote.js'
import { hostileValues, runRemote } from '../helpers/shell.js'

describe('POSIX dialect', () => {
  test('is what command.ts builds with', () => {
    expect(posix.endOfScript).toBe(END_OF_SCRIPT)
    expect(posix.remoteShell).toBe(REMOTE_SHELL)
    const values = hostileValues('dialect')
    for (const v of values) expect(posix.quote(v)).toBe(sh(v))
    expect(posix.script(['a', false, undefined, 'b'])).toBe(script('a', false, undefined, 'b'))
    expect(withEnv({ label: 'x', script: 'true', env: { A: '1' } })).toBe(posix.withEnv('true', { A: '1' }))
  })

  test('quoted values and env arrive byte for byte in /bin/sh', async () => {
    for (const v of hostileValues('dialect')) {
      const text = posix.withEnv(posix.script([`printf '%s|' ${posix.quote(v)}`, `printf '%s' "$V"`]), {
        V: v
      })
      const r = await runRemote(text)
      expect(r).toEqual({ code: 0, stdout: `${v}|${v}`, stderr: '' })
    }
  })

  test('refuses an env name that is not one, and a script line that would end the script early', () => {
    expect(() => posix.withEnv('true', { 'A;rm': 'x' })).toThrow('not an environment variable name: "A;rm"')
    expect(() => posix.frame(`echo a\n${END_OF_SCRIPT}\necho b`)).toThrow(
      `a line of the script is ${END_OF_SCRIPT}`
    )
  })

  test('the framed script ends with the end-of-script line', () => {
    expect(posix.frame('exit 3')).toBe(`exit 3\n${END_OF_SCRIPT}\n`)
  })
})
