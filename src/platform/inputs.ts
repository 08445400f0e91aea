import { ConfigError } from '../core/exit.js'
import { parseDuration } from '../config/duration.js'
import type { Overrides } from '../config/load.js'
import { parseReleaseId, type ReleaseId } from '../release/id.js'
import { parseBackupName, type BackupName } from '../backup-engines/name.js'

/** Action / GitLab inputs, read through one function so both adapters parse them alike. */
export interface PlatformInputs {
  command: 'deploy' | 'rollback' | 'backup' | 'backups' | 'status' | 'releases' | 'plan'
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
  /** deploy: build a commit an older release has anew instead of rolling back to it (set only when true). */
  redeploy?: true
  /** Wait this long for a lock another run holds (input wait-lock). */
  waitLockMs?: number
}

const COMMANDS = ['deploy', 'rollback', 'backup', 'status', 'releases', 'plan', 'backups'] as const

export function parseInputs(get: (name: string) => string): PlatformInputs {
  const command = get('command') || 'deploy'
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw new ConfigError(
      `input command: expected one of ${COMMANDS.slice(0, -1).join(', ')}, got ${JSON.stringify(command)} (or backups, the list of backups)`
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
    redeploy: /^(true|1|yes)$/i.test(get('redeploy')) || undefined,
    ...(waitLockMs ? { waitLockMs } : {})
  }
}

/** The Action's GitHub-only inputs: the artifact and the deployment (README "Action inputs"). */
export interface GithubInputs {
  upload: boolean
  artifactName?: string
  retentionDays?: number
  /** own: the Action records a GitHub deployment; off: none (a job-level `environment:` records its own). */
  deployment: 'own' | 'off'
  environment?: string
  environmentUrl?: string
  token: string
}

const yes = (v: string) => /^(true|1|yes)$/i.test(v)
const no = (v: string) => /^(false|0|no)$/i.test(v)

export function parseGithubInputs(get: (name: string) => string): GithubInputs {
  const upload = get('upload-artifact')
  if (upload && !yes(upload) && !no(upload))
    throw new ConfigError(`input upload-artifact: expected true or false, got ${JSON.stringify(upload)}`)
  const days = get('artifact-retention-days')
  if (days && (!/^\d{1,2}$/.test(days) || Number(days) < 1 || Number(days) > 90))
    throw new ConfigError(
      `input artifact-retention-days: expected a number of days 1-90, got ${JSON.stringify(days)}`
    )
  const environment = get('environment') || undefined
  const mode = get('github-deployment') || (environment ? 'own' : 'off')
  if (mode !== 'own' && mode !== 'off')
    throw new ConfigError(`input github-deployment: expected own or off, got ${JSON.stringify(mode)}`)
  if (mode === 'own' && !environment)
    throw new ConfigError('input github-deployment: own needs input environment (the environment to record)')
  const environmentUrl = get('environment-url') || undefined
  if (environmentUrl && !/^https?:\/\/\S+$/.test(environmentUrl))
    throw new ConfigError(
      `input environment-url: expected an http(s) URL, got ${JSON.stringify(environmentUrl)}`
    )
  const token = get('github-token')
  if (mode === 'own' && !token)
    throw new ConfigError('input github-token is empty: github-deployment: own needs a token')
  return {
    upload: upload ? yes(upload) : true,
    artifactName: get('artifact-name') || undefined,
    retentionDays: days ? Number(days) : undefined,
    deployment: mode,
    environment,
    environmentUrl,
    token
  }
}
