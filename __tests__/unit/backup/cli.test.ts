import { describe, expect, test } from '@jest/globals'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { checkBackupArgs, type BackupArgs } from '../../../src/flows/backup.js'
import { ConfigError } from '../../../src/core/exit.js'
import { runCli } from '../../../src/platform/cli.js'

const args = (a: Partial<BackupArgs>): BackupArgs => ({ command: 'backups', yes: false, json: false, ...a })

describe('backup command arguments, checked before anything loads or connects', () => {
  test.each([
    [
      { command: 'backups' },
      'backups: expected `backups list`, `backups verify NAME`, `backups prune`, `backups download NAME`, `backups upload PATH`, `backups protect NAME` or `backups unprotect NAME`'
    ],
    [{ command: 'backups', sub: 'protect' }, 'backups protect: name the backup'],
    [{ command: 'backups', sub: 'unprotect' }, 'backups unprotect: name the backup'],
    [{ command: 'backups', sub: 'list', keep: true }, '--keep (--protect) is for `backup`'],
    [
      { command: 'restore', name: 'shop_20261121_193000', yes: true, keep: true },
      '--keep (--protect) is for'
    ],
    [{ command: 'backups', sub: 'delete' }, 'backups: expected'],
    [{ command: 'backups', sub: 'verify' }, 'backups verify: name the backup'],
    [{ command: 'backups', sub: 'download' }, 'backups download: name the backup'],
    [{ command: 'backups', sub: 'verify', name: '../../etc/passwd' }, 'is not a backup name'],
    [{ command: 'restore' }, 'restore: name the backup to restore'],
    [{ command: 'restore', name: 'latest' }, 'is not a backup name'],
    [{ command: 'restore', name: 'shop_20261121_193000' }, 'run again with --yes to do it']
  ] as [Partial<BackupArgs>, string][])('%j: %s', (a, message) => {
    expect(() => checkBackupArgs(args(a))).toThrow(ConfigError)
    expect(() => checkBackupArgs(args(a))).toThrow(message)
  })

  test.each([
    { command: 'backup' },
    { command: 'backup', keep: true },
    { command: 'backups', sub: 'protect', name: 'shop_20261121_193000' },
    { command: 'backups', sub: 'unprotect', name: 'shop_20261121_193000' },
    { command: 'backups', sub: 'list' },
    { command: 'backups', sub: 'prune' },
    { command: 'backups', sub: 'prune', yes: true },
    { command: 'backups', sub: 'verify', name: 'shop_20261121_193000' },
    { command: 'restore', name: 'shop_20261121_193000', yes: true }
  ] as Partial<BackupArgs>[])('%j is fine', a => {
    expect(() => checkBackupArgs(args(a))).not.toThrow()
  })

  test('through the CLI: exit 2 and a message, with no config file needed', async () => {
    const stdout = new PassThrough()
    const stderr = new PassThrough()
    let err = ''
    stderr.on('data', c => (err += String(c)))
    const code = await runCli(['restore', 'shop_20261121_193000', '--config', '/nonexistent.yml'], {
      stdout,
      stderr,
      env: {}
    })
    expect(code).toBe(2)
    expect(err).toContain('run again with --yes')
  })

  test('the usage lists the backup commands', async () => {
    const stdout = new PassThrough()
    let out = ''
    stdout.on('data', c => (out += String(c)))
    expect(await runCli(['--help'], { stdout, stderr: new PassThrough(), env: {} })).toBe(0)
    for (const line of [
      'backup ',
      'backups list',
      'backups verify NAME',
      'backups prune [--yes]',
      'restore NAME --yes'
    ])
      expect(out).toContain(line)
  })
})

describe('plan', () => {
  test('shows the backup scripts for the primary, with secrets as placeholders', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sd-plan-'))
    const config = join(dir, 'safe-deploy.yml')
    writeFileSync(
      config,
      [
        'app: shop',
        'path: /srv/shop',
        'hosts: [{ local: true }]',
        'backup:',
        '  databases: [{ engine: postgres, url: "postgres://app:hunter2-secret@db:5432/shop" }]',
        '  encrypt: { recipients: [age1xyz], identity: env:AGE_IDENTITY }'
      ].join('\n')
    )
    const stdout = new PassThrough()
    let out = ''
    stdout.on('data', c => (out += String(c)))
    const code = await runCli(['plan', '--config', config], {
      stdout,
      stderr: new PassThrough(),
      env: { AGE_IDENTITY: 'AGE-SECRET-KEY-1PLANPLANPLAN' }
    })
    expect(code).toBe(0)
    expect(out).toContain('# check backup tools and databases')
    expect(out).toContain('# back up to /srv/shop/backups/shop_')
    expect(out).toContain('PGPASSWORD="$sd_pw0" pg_dump -Fc --no-password')
    expect(out).toContain("export SD_DB0_PASSWORD='<SD_DB0_PASSWORD>'")
    expect(out).not.toContain('hunter2-secret')
    expect(out).not.toContain('AGE-SECRET-KEY-1PLANPLANPLAN')
  })
})
