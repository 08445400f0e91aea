import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, jest, test } from '@jest/globals'
import { DeployLog, runStem, stamp, type Reporter } from '../../../src/report/log.js'
import { Redactor } from '../../../src/report/redact.js'
import { cleanup, tempDir } from '../helpers/shell.js'

const LINE = /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] /

function recorder(): Reporter & { calls: string[] } {
  const calls: string[] = []
  return {
    calls,
    info: l => calls.push(`info ${l}`),
    warn: l => calls.push(`warn ${l}`),
    error: l => calls.push(`error ${l}`),
    startGroup: t => calls.push(`group ${t}`),
    endGroup: () => calls.push('endgroup')
  }
}

describe('stamp and runStem', () => {
  const d = new Date(Date.UTC(2026, 10, 21, 19, 30, 5))

  test('stamp is UTC YYYY-MM-DD HH:MM:SS', () => {
    expect(stamp(d)).toBe('2026-11-21 19:30:05')
    expect(stamp(new Date(Date.UTC(2027, 0, 2, 3, 4, 5)))).toBe('2027-01-02 03:04:05')
  })

  test('runStem is <command>_YYYYMMDD_HHMMSS in UTC', () => {
    expect(runStem('deploy', d)).toBe('deploy_20261121_193005')
    expect(runStem('rollback', new Date(Date.UTC(2027, 0, 2, 3, 4, 5)))).toBe('rollback_20270102_030405')
  })
})

describe('DeployLog', () => {
  let dir: string
  beforeAll(() => {
    dir = tempDir('log')
  })
  afterAll(() => cleanup(dir))

  describe('at a fixed time', () => {
    beforeEach(() => {
      jest.useFakeTimers({ now: new Date(Date.UTC(2026, 10, 21, 19, 30, 5)) })
    })
    afterEach(() => {
      jest.useRealTimers()
    })

    test('writes [time] [stage] [host] message lines to the file and the reporter', () => {
      const file = join(dir, 'a', 'b', 'deploy_20261121_193005.log')
      const rep = recorder()
      const log = new DeployLog(file, rep, new Redactor([]))
      log.setStage('backup')
      log.info('Backup created: shop_20261121_193005.dump', 'web-1')
      log.warn('disk is 91% full', 'web-2')
      log.error('no host')
      log.write('from a stage', { stage: 'verify', host: 'web-1' })
      const expected = [
        '[2026-11-21 19:30:05] [backup] [web-1] Backup created: shop_20261121_193005.dump',
        '[2026-11-21 19:30:05] [backup] [web-2] disk is 91% full',
        '[2026-11-21 19:30:05] [backup] no host',
        '[2026-11-21 19:30:05] [verify] [web-1] from a stage'
      ]
      expect(readFileSync(file, 'utf8')).toBe(expected.join('\n') + '\n')
      expect(log.lines).toEqual(expected)
      expect(rep.calls).toEqual([
        'info [backup] [web-1] Backup created: shop_20261121_193005.dump',
        'warn [backup] [web-2] disk is 91% full',
        'error [backup] no host',
        'info [verify] [web-1] from a stage'
      ])
      expect(statSync(file).mode & 0o777).toBe(0o600)
    })

    test('the default stage is run; a multi-line message is one line each, trailing space dropped', () => {
      const file = join(dir, 'multi.log')
      const log = new DeployLog(file, recorder(), new Redactor([]))
      log.info('first\nsecond  \n\n', 'h')
      expect(readFileSync(file, 'utf8')).toBe(
        '[2026-11-21 19:30:05] [run] [h] first\n[2026-11-21 19:30:05] [run] [h] second\n'
      )
    })
  })

  test('secrets are redacted in the file, the lines and the reporter', () => {
    const key =
      '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAkeylineONEkeylineONE\nBBBBkeylineTWOkeylineTWO\n-----END OPENSSH PRIVATE KEY-----'
    const file = join(dir, 'secret.log')
    const rep = recorder()
    const log = new DeployLog(file, rep, new Redactor([key, 'hunter2-db']))
    log.info(`password is hunter2-db`, 'web-1')
    log.info(`the key:\n${key}`)
    const text = readFileSync(file, 'utf8')
    for (const where of [text, log.lines.join('\n'), rep.calls.join('\n')]) {
      expect(where).not.toContain('hunter2-db')
      expect(where).not.toContain('keylineONE')
      expect(where).not.toContain('keylineTWO')
    }
    expect(text.split('\n').map(l => l.replace(LINE, ''))).toEqual([
      '[run] [web-1] password is ***',
      '[run] the key:',
      '[run] ***',
      ''
    ])
  })

  test('lineWriter: output arriving in chunks is logged by line, and a secret split across chunks is still redacted', () => {
    const file = join(dir, 'stream.log')
    const rep = recorder()
    const log = new DeployLog(
      file,
      rep,
      new Redactor(['hunter2-db', 'AAAAkeylineONEkeylineONE\nBBBBkeylineTWOkeylineTWO'])
    )
    log.setStage('build')
    const w = log.lineWriter('web-1', 'warn')
    w.push('pass=hun')
    w.push('ter2-db\nkey AAAAkeyline')
    w.push('ONEkeylineONE\nBBBBkeylineTWOkeylineTWO\nno newline at the end')
    expect(log.lines).toHaveLength(3)
    w.flush()
    w.flush()
    expect(log.lines.map(l => l.replace(LINE, ''))).toEqual([
      '[build] [web-1] pass=***',
      '[build] [web-1] key ***',
      '[build] [web-1] ***',
      '[build] [web-1] no newline at the end'
    ])
    expect(rep.calls.every(c => c.startsWith('warn '))).toBe(true)
    expect(readFileSync(file, 'utf8')).not.toMatch(/hunter2|keyline/)
  })

  test('without a file it only reports', () => {
    const rep = recorder()
    const log = new DeployLog(undefined, rep, new Redactor([]))
    log.startGroup('deploy')
    log.info('hello')
    log.endGroup()
    expect(rep.calls).toEqual(['group deploy', 'info [run] hello', 'endgroup'])
    expect(log.lines).toHaveLength(1)
    expect(log.lines[0]).toMatch(new RegExp(`${LINE.source}\\[run\\] hello$`))
  })

  test('control characters in messages, stages and host names are escaped; a host name never starts a line', () => {
    const file = join(dir, 'controls.log')
    const rep = recorder()
    const log = new DeployLog(file, rep, new Redactor([]))
    log.setStage('ver\x1b[2Jify')
    log.info('50%\r100%\x1b[31m red\x07 bell\x7f\x9b tab\tkept\r', 'web\n[x] DEPLOYMENT SUCCESS\r')
    const text = readFileSync(file, 'utf8')
    expect(text.split('\n')).toHaveLength(2)
    expect(text.replace(LINE, '')).toBe(
      '[ver\\x1b[2Jify] [web\\n[x] DEPLOYMENT SUCCESS\\r] 50%\\r100%\\x1b[31m red\\x07 bell\\x7f\\x9b tab\tkept\n'
    )
    // eslint-disable-next-line no-control-regex
    for (const l of [...log.lines, ...rep.calls]) expect(l).not.toMatch(/[\r\n\x1b\x07\x7f\x9b]/)
  })

  test('remote output that starts with :: never starts a reporter line (no workflow command)', () => {
    const rep = recorder()
    const log = new DeployLog(undefined, rep, new Redactor([]))
    const w = log.lineWriter('web-1')
    w.push('::error::forged\n  ::set-output name=x::y\n::stop-commands::abc\n')
    log.error('::warning::from a message\n::add-mask::z', '::group::host')
    expect(rep.calls).toHaveLength(5)
    for (const c of rep.calls) {
      const line = c.slice(c.indexOf(' ') + 1)
      expect(line.trimStart().startsWith('::')).toBe(false)
      expect(line.startsWith('[run] [')).toBe(true)
    }
  })

  test('a log file that cannot be written never throws: one warning, lines kept in memory', () => {
    const file = join(dir, 'full', 'deploy.log')
    const rep = recorder()
    const log = new DeployLog(file, rep, new Redactor([]))
    log.info('first line')
    expect(readFileSync(file, 'utf8')).toMatch(/first line\n$/)
    // the file becomes unwritable mid-run (here: a directory where the file was, EISDIR)
    rmSync(file)
    mkdirSync(file)
    expect(() => {
      log.info('second line')
      log.error('third line')
    }).not.toThrow()
    expect(log.fileError).toMatch(/EISDIR/)
    const warnings = rep.calls.filter(c => c.includes('cannot write the log file'))
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatch(/^warn .*cannot write the log file .*deploy\.log \(.*EISDIR/)
    expect(log.lines.map(l => l.replace(LINE, ''))).toEqual([
      '[run] first line',
      '[run] second line',
      expect.stringContaining('cannot write the log file'),
      '[run] third line'
    ])
  })

  test('a log dir that cannot be created never throws either', () => {
    writeFileSync(join(dir, 'a-file'), 'x')
    const rep = recorder()
    const log = new DeployLog(join(dir, 'a-file', 'sub', 'x.log'), rep, new Redactor([]))
    expect(() => log.info('hello')).not.toThrow()
    expect(log.fileError).toMatch(/ENOTDIR|EEXIST/)
    expect(rep.calls.filter(c => c.includes('cannot write the log file'))).toHaveLength(1)
    expect(rep.calls.at(-1)).toBe('info [run] hello')
  })

  test('a reporter that throws does not stop the log', () => {
    const log = new DeployLog(
      undefined,
      {
        ...recorder(),
        info: () => {
          throw new Error('EPIPE')
        }
      },
      new Redactor([])
    )
    expect(() => log.info('hello')).not.toThrow()
    expect(log.lines).toHaveLength(1)
  })
})
