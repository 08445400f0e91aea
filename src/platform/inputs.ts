import { ConfigError } from '../core/exit.js'
import { parseDuration } from '../config/duration.js'
import type { Overrides } from '../config/load.js'
import { parseReleaseId, type ReleaseId } from '../release/id.js'
import { parseBackupName, type BackupName } from '../backup-engines/name.js'

/** Action / GitLab inputs, read through one function so both adapters parse them alike. */
export interface PlatformInputs {
  command: 'deploy' | 'rollback' | 'backup' | 'status' | 'releases' | 'plan'
  config: string
  overrides: Overrides
  to?: ReleaseId
  /** rollback: restore this backup (databases). */
  restore?: BackupName
  /** rollback: leave the database as it is. */
  noDb: boolean
  /** rollback: run its down command even with no backups to take a safety backup with. */
  yes: boolean
  /** rollback: only show what it would do (read-only). */
  dryRun: boolean
  verbose: boolean
  /** Wait this long for a lock another run holds (input wait-lock). */
  waitLockMs?: number
}

const COMMANDS = ['deploy', 'rollback', 'backup', 'status', 'releases', 'plan'] as const

export function parseInputs(get: (name: string) => string): PlatformInputs {
  const command = get('command') || 'deploy'
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw new ConfigError(
      `input command: expected one of ${COMMANDS.join(', ')}, got ${JSON.stringify(command)}`
    )
  }
  const portText = get('port')
  const port = portText ? (/^\d{1,5}$/.test(portText) ? Number(portText) : NaN) : undefined
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
    throw new ConfigError(`input port: expected a port number 1-65535, got ${JSON.stringify(portText)}`)
  }
  const to = get('to')
  const restore = get('restore')
  const noDb = /^(true|1|yes)$/i.test(get('no-db'))
  if (restore && noDb) throw new ConfigError('inputs restore and no-db: give one, not both')
  const waitText = get('wait-lock')
  const waitLockMs = waitText ? parseDuration(waitText) : undefined
  if (waitText && waitLockMs === undefined)
    throw new ConfigError(
      `input wait-lock: expected a duration such as 90s or 5m, got ${JSON.stringify(waitText)}`
    )
  const skipUnreachable = /^(true|1|yes)$/i.test(get('skip-unreachable'))
  if (skipUnreachable && command !== 'deploy')
    throw new ConfigError(`input skip-unreachable: only for command deploy, not ${command}`)
  return {
    command: command as PlatformInputs['command'],
    config: get('config') || 'safe-deploy.yml',
    overrides: {
      host: get('host') || undefined,
      hosts: get('hosts') || undefined,
      roles: get('roles') || undefined,
      skipUnreachable: skipUnreachable || undefined,
      port,
      user: get('user') || undefined,
      path: get('path') || undefined,
      privateKey: get('private-key') || undefined,
      knownHosts: get('known-hosts') || undefined,
      ...(/^(true|1|yes)$/i.test(get('skip-test')) ? { skipTest: true } : {})
    },
    to: to ? parseReleaseId(to, 'input to') : undefined,
    restore: restore ? parseBackupName(restore, undefined, 'input restore') : undefined,
    noDb,
    yes: /^(true|1|yes)$/i.test(get('yes')),
    dryRun: /^(true|1|yes)$/i.test(get('dry-run')),
    verbose: /^(true|1|yes)$/i.test(get('verbose')),
    ...(waitLockMs ? { waitLockMs } : {})
  }
}
