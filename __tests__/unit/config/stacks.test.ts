import { describe, expect, test } from '@jest/globals'
import { configSchema } from '../../../src/config/schema.js'
import { LOG_PRESETS, fillLogsCommand, logScan, verifyProblems } from '../../../src/config/rules.js'

const base = { app: 'bot', path: '/srv/bot', hosts: [{ address: 'h' }] }
const parse = (extra: Record<string, unknown>) => configSchema.parse({ ...base, ...extra })

describe('logs placeholders', () => {
  const since = new Date('2026-11-21T19:30:00.123Z')

  test('{since} is ISO 8601 UTC, {since_epoch} and {started} seconds, {lines} the count', () => {
    expect(fillLogsCommand('journalctl -u bot --since {since} -n {lines}', since, 50)).toBe(
      'journalctl -u bot --since 2026-11-21T19:30:00Z -n 50'
    )
    expect(fillLogsCommand('x {since_epoch} {started}', since, 1)).toBe('x 1795289400 1795289400')
  })

  test('unknown braces are left alone; every value goes through sh()', () => {
    expect(fillLogsCommand("awk '{print}' {lines}", since, 3)).toBe("awk '{print}' 3")
  })
})

describe('verify.logs defaults', () => {
  test('verify.logs.command defaults to logs.command', () => {
    const c = parse({ logs: { command: 'docker compose logs --since {since} bot' }, verify: { logs: {} } })
    expect(logScan(c)?.template).toBe('docker compose logs --since {since} bot')
    expect(verifyProblems(c)).toEqual([])
  })

  test('its own command wins over logs.command', () => {
    const c = parse({ logs: { command: 'a' }, verify: { logs: { command: 'b' } } })
    expect(logScan(c)?.template).toBe('b')
  })

  test('the telegram-polling preset adds the 409 Conflict patterns to fail_on', () => {
    const c = parse({
      verify: { logs: { command: 'x', preset: 'telegram-polling', fail_on: ['Traceback'] } }
    })
    expect(logScan(c)?.failOn).toEqual(['Traceback', ...LOG_PRESETS['telegram-polling']])
    expect(logScan(c)?.failOn).toContain('Conflict: terminated by other getUpdates')
  })

  test('verify.logs with no command anywhere is refused', () => {
    const c = parse({ verify: { logs: { preset: 'telegram-polling' } } })
    expect(logScan(c)).toBeUndefined()
    expect(verifyProblems(c).join('\n')).toMatch(/verify\.logs: give verify\.logs\.command, or logs\.command/)
  })
})

describe('stages.stop and verify.heartbeat', () => {
  test('stages.stop with blue-green is refused: blue-green runs both at once', () => {
    const c = parse({
      stages: { stop: 'docker compose stop bot' },
      switch: {
        strategy: 'blue-green',
        ports: [8001, 8002],
        start: 'start {port}',
        stop: 'stop {port}',
        upstream_file: '/etc/nginx/up.conf',
        proxy_reload: 'nginx -s reload'
      }
    })
    expect(verifyProblems(c).join('\n')).toMatch(/stages\.stop: blue-green runs both releases at once/)
  })

  test('heartbeat: a relative file and a duration', () => {
    expect(parse({ verify: { heartbeat: { file: 'run/hb', max_age: '2m' } } }).verify.heartbeat).toEqual({
      file: 'run/hb',
      max_age: 120_000
    })
    expect(() => parse({ verify: { heartbeat: { file: '/tmp/hb', max_age: '2m' } } })).toThrow()
    expect(() => parse({ verify: { heartbeat: { file: '../hb', max_age: '2m' } } })).toThrow()
  })
})
