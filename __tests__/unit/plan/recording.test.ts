/** The recording transport (src/transport/recording.ts): records what it is sent, runs nothing, answers. */
import { describe, expect, test } from '@jest/globals'
import { END_OF_SCRIPT, REMOTE_SHELL } from '../../../src/commands/command.js'
import { RecordingTransport, type Recorded } from '../../../src/transport/recording.js'

describe('RecordingTransport', () => {
  test('records label, parts and the script without its end marker; answers the state readers', async () => {
    const sink: Recorded[] = []
    const t = new RecordingTransport('web-1', sink, () => 'preflight', { current: 'R1', activePort: 8002 })
    const lock = await t.exec(REMOTE_SHELL, {
      stdin: `echo lock\n${END_OF_SCRIPT}\n`,
      holdStdin: true,
      label: 'take the deploy lock'
    })
    expect(lock).toEqual({ code: 0, stdout: 'STATE=acquired\n', stderr: '' })
    const inspect = await t.exec(REMOTE_SHELL, { stdin: `x\n${END_OF_SCRIPT}\n`, label: 'inspect host' })
    expect(inspect.stdout).toContain('CURRENT=releases/R1\n')
    expect(inspect.stdout).toContain('RELEASE=R1\nCOMPLETE=R1\n')
    const bg = await t.exec(REMOTE_SHELL, { stdin: `y\n${END_OF_SCRIPT}\n`, label: 'read blue-green state' })
    expect(bg.stdout).toBe('STATE=8002 R1\n')
    const both = await t.exec(REMOTE_SHELL, {
      stdin: `a\nb\n${END_OF_SCRIPT}\n`,
      label: 'a, b',
      parts: ['renew the deploy lock', 'release the deploy lock']
    })
    expect(both.stdout).toBe('STATE=renewed\nSTATE=released\n')
    const up = await t.exec('tar -xzf -', { stdin: '(the archive)', label: 'upload' })
    expect(up.code).toBe(0)
    expect(sink).toEqual([
      { host: 'web-1', stage: 'preflight', label: 'take the deploy lock', script: 'echo lock' },
      { host: 'web-1', stage: 'preflight', label: 'inspect host', script: 'x' },
      { host: 'web-1', stage: 'preflight', label: 'read blue-green state', script: 'y' },
      {
        host: 'web-1',
        stage: 'preflight',
        label: 'a, b',
        parts: ['renew the deploy lock', 'release the deploy lock'],
        script: 'a\nb'
      },
      { host: 'web-1', stage: 'preflight', label: 'upload', script: 'tar -xzf -', stdin: '(the archive)' }
    ])
  })

  test('two reads of the migration revision differ (a migration that moved it); an interrupted run records nothing', async () => {
    const sink: Recorded[] = []
    const t = new RecordingTransport('web-1', sink, () => 'migrate')
    const read = () => t.exec(REMOTE_SHELL, { stdin: `r\n${END_OF_SCRIPT}\n`, label: 'migration revision' })
    expect((await read()).stdout).not.toBe((await read()).stdout)
    const stop = new AbortController()
    stop.abort()
    await expect(t.exec('true', { signal: stop.signal, label: 'x' })).rejects.toThrow('interrupted')
    expect(sink).toHaveLength(2)
  })
})
