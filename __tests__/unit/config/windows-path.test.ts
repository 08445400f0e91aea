/** Deploy roots on a Windows runner: a drive path for a local host, refused for an SSH host. */
import { describe, expect, test } from '@jest/globals'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { configSchema } from '../../../src/config/schema.js'
import { loadConfig } from '../../../src/config/load.js'

const parse = (path: string) => configSchema.safeParse({ app: 'demo', path, hosts: [{ local: true }] })

describe('a Windows deploy root', () => {
  test.each([
    ['C:\\Users\\me\\AppData\\Local\\Temp\\demo\\', 'C:/Users/me/AppData/Local/Temp/demo'],
    ['d:/deploy//app/./', 'D:/deploy/app']
  ])('%j reads as %j', (given, want) => {
    const r = parse(given)
    expect(r.success && r.data.path).toBe(want)
  })

  test.each(['C:\\', 'C:\\deploy\\..\\x', 'C:deploy'])('%j is refused', given => {
    expect(parse(given).success).toBe(false)
  })

  test('an SSH host with a Windows path is refused before connecting', () => {
    const dir = mkdtempSync(join(tmpdir(), 'win-path-'))
    const file = join(dir, 'safe-deploy.yml')
    writeFileSync(
      file,
      stringify({
        app: 'demo',
        path: 'C:\\deploy\\app',
        hosts: [{ address: 'web-1' }],
        ssh: { private_key: 'k' }
      })
    )
    expect(() => loadConfig(file, {}, {})).toThrow(
      'hosts: web-1: path C:/deploy/app is a Windows path; an SSH host needs a POSIX path such as /srv/app'
    )
  })
})
