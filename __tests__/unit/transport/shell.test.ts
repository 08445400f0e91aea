/** The runner's shell per platform (src/transport/shell.ts): pure, the platform is an argument. */
import { describe, expect, test } from '@jest/globals'
import { NO_SH_ON_WINDOWS, findWindowsSh, shellFor } from '../../../src/transport/shell.js'

const none = () => false

describe('shellFor', () => {
  test('POSIX: /bin/sh -c for both kinds, stopped by its process group', () => {
    for (const kind of ['posix', 'platform'] as const)
      expect(shellFor(kind, 'npm test', 'linux', {}, none)).toEqual({
        file: '/bin/sh',
        args: ['-c', 'npm test'],
        env: {},
        verbatim: false,
        kill: 'group'
      })
    expect(shellFor('platform', 'make', 'darwin', {}, none)?.file).toBe('/bin/sh')
  })

  test("win32, the user's commands: cmd.exe /d /s /c as node's shell: true, ComSpec when set", () => {
    expect(shellFor('platform', 'npm test && echo ok', 'win32', {}, none)).toEqual({
      file: 'cmd.exe',
      args: ['/d', '/s', '/c', '"npm test && echo ok"'],
      env: {},
      verbatim: true,
      kill: 'taskkill'
    })
    const comspec = 'C:\\Windows\\system32\\cmd.exe'
    expect(shellFor('platform', 'x', 'win32', { ComSpec: comspec }, none)?.file).toBe(comspec)
  })

  test('win32, POSIX scripts: sh.exe from PATH with native symlinks; MSYS kept', () => {
    const sh = 'C:\\Tools\\Git\\usr\\bin\\sh.exe'
    const env = { Path: 'C:\\Windows;C:\\Tools\\Git\\usr\\bin', MSYS: 'enable_pcon' }
    expect(shellFor('posix', 'ln -s a b', 'win32', env, f => f === sh)).toEqual({
      file: sh,
      args: ['-c', 'ln -s a b'],
      env: { MSYS: 'enable_pcon winsymlinks:nativestrict' },
      verbatim: false,
      kill: 'taskkill'
    })
  })

  test('win32 without sh on PATH: Git for Windows in Program Files; none at all: undefined', () => {
    const env = { PATH: 'C:\\Windows', ProgramFiles: 'C:\\Program Files' }
    const git = 'C:\\Program Files\\Git\\bin\\sh.exe'
    expect(findWindowsSh(env, f => f === git)).toBe(git)
    expect(shellFor('posix', 'true', 'win32', env, f => f === git)?.env).toEqual({
      MSYS: 'winsymlinks:nativestrict'
    })
    expect(shellFor('posix', 'true', 'win32', env, none)).toBeUndefined()
    expect(NO_SH_ON_WINDOWS).toContain('Git for Windows')
  })
})
