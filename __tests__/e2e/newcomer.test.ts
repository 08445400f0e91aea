/**
 * A newcomer's walk of the docker-bots stack with the docs alone: docs/guides/docker-bots.md, followed as
 * written. Every fenced block after a `<!-- walk: <step> -->` comment is read from the page and its commands
 * run in order, as the CLI in a child process (the current source, harness/cliproc.ts spawnCli) in the
 * project dir: `npx safe-deploy ARGS` is `safe-deploy ARGS`, `export NAME=...` names a variable the shell
 * must have, and a `# exit N` comment is the exit code the command must end with (none: 0). The steps the
 * page has must be the steps this test knows, in the same order, so neither can drift from the other.
 *
 * Real parts: OpenSSH sshd (the server), PostgreSQL (the bots' database), podman + podman-compose under runc
 * (harness/podman.ts maps `docker` / `docker compose` onto them), age. Each step's outcome is asserted on
 * the server: the `current` link, the image each bot's container runs, the rows, the backup files' modes,
 * the exit codes, the lines `logs` prints.
 *
 * What the person edits is what the page's "Fill it in" says: hosts and path, their tests, no migrations
 * (these bots have none), their age public key, and the database outside compose (`host:`/`port:` instead of
 * `container:`). What the test must do differently from a Docker server, and only that:
 * - the bots are busybox images built FROM scratch (no registry here): a shell loop that touches the
 *   heartbeat and logs; no `postgres` service (no image): the database is the harness's PostgreSQL;
 * - `env.PATH` puts the podman-backed `docker` first on the host;
 * - podman-compose 1.0.3 lacks `up --wait` and `ps --status`, recreates a container only with
 *   `--force-recreate`, and reads `logs -n` as `--names`: `stages.restart`, the first `verify.command`
 *   (`docker ps --filter`) and `logs.command` (`--tail`) are written for it, and `pg_isready` runs against
 *   the harness's server instead of in a container;
 * - shorter waits: `verify.window` 2 s, `verify.heartbeat.max_age` 10 s.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import {
  chmodSync,
  copyFileSync,
  existsSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync
} from 'node:fs'
import { join } from 'node:path'
import { parse, stringify } from 'yaml'
import { fastShell, startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { containerEngine, type Engine } from './harness/podman.js'
import { ageKeyPair, startPostgres, type PgServer } from './harness/db.js'
import { repo, spawnCli, type CliOutcome } from './harness/cliproc.js'
import { currentOf, historyOf, releasesOf } from './support.js'

const GUIDE = join(repo, 'docs', 'guides', 'docker-bots.md')
const PROJECT = 'field_service' // the example's COMPOSE_PROJECT_NAME
const PASSWORD = `bots pa'ss-${Date.now()}`

/** One command of a walk block: the CLI's argv, or the name an `export` line sets. */
type Line = { kind: 'cli'; argv: string[]; exit: number; text: string } | { kind: 'export'; name: string }

interface Step {
  id: string
  lines: Line[]
}

/** The page's walk blocks, in order. */
export function walkSteps(markdown: string): Step[] {
  const steps: Step[] = []
  const block = /<!-- walk: ([\w-]+) -->\s*\n```bash\n([\s\S]*?)\n```/g
  for (const m of markdown.matchAll(block)) {
    const lines: Line[] = []
    for (const raw of (m[2] as string).split('\n')) {
      const hash = raw.search(/\s#\s|^#/)
      const command = (hash >= 0 ? raw.slice(0, hash) : raw).trim()
      const comment = hash >= 0 ? raw.slice(hash) : ''
      if (!command) continue
      const exported = /^export ([A-Z_][A-Z0-9_]*)=/.exec(command)
      if (exported) {
        lines.push({ kind: 'export', name: exported[1] as string })
        continue
      }
      const words = command.split(/\s+/)
      if (words[0] !== 'npx' || words[1] !== 'safe-deploy')
        throw new Error(`walk ${m[1]}: not a safe-deploy command: ${raw}`)
      const exit = /# exit (\d)/.exec(comment)
      lines.push({ kind: 'cli', argv: words.slice(2), exit: exit ? Number(exit[1]) : 0, text: command })
    }
    steps.push({ id: m[1] as string, lines })
  }
  return steps
}

const STEPS = walkSteps(readFileSync(GUIDE, 'utf8'))
const KNOWN = [
  'init',
  'secrets',
  'plan',
  'doctor',
  'deploy',
  'deploy-broken',
  'logs',
  'backup',
  'backups',
  'restore',
  'deploy-fixed',
  'rollback'
]

let host: SshHost
let pg: PgServer
let engine: Engine
let keys: { identity: string; recipient: string }
let dir: string
let root: string
let env: NodeJS.ProcessEnv
let hostName: string
/** The release ids in the order the walk made them. */
const made: string[] = []
let backupName = ''
const SECRETS = ['SSH_KEY', 'KNOWN_HOSTS', 'POSTGRES_PASSWORD', 'AGE_IDENTITY']
let rowsAtBackup = ''

beforeAll(async () => {
  host = await startSshd({ extraConfig: fastShell() })
  pg = await startPostgres()
  pg.createDatabase(PROJECT, PROJECT, PASSWORD)
  pg.psql(
    `CREATE TABLE orders (id int PRIMARY KEY, master text, note text);
     INSERT INTO orders SELECT g, 'master ' || g, md5(g::text) FROM generate_series(1, 500) g;
     ALTER TABLE orders OWNER TO ${PROJECT};`,
    PROJECT
  )
  engine = containerEngine(tempDir('sd-walk-engine-'))
  engine.clean(PROJECT, `${PROJECT}-`)
  keys = ageKeyPair()
  dir = tempDir('sd-walk-project-')
  root = host.root('field-service')
  hostName = `${host.address}:${host.port}`
  env = { PATH: process.env.PATH, HOME: process.env.HOME }
}, 120_000)

afterAll(async () => {
  engine?.clean(PROJECT, `${PROJECT}-`)
  await pg?.stop()
  await stopAll()
})

async function run(argv: string[]): Promise<CliOutcome> {
  return spawnCli(argv, env, dir).exited
}

function expectCode(r: CliOutcome, code: number, what: string): void {
  if (r.code !== code)
    throw new Error(
      `${what}: expected exit ${code}, got ${r.code}\n--- stderr ---\n${r.stderr.slice(-6000)}\n--- stdout ---\n${r.stdout.slice(-3000)}`
    )
}

/**
 * The bots' source: two services from one busybox image, as examples/docker-bots/docker-compose.yml has
 * them (per-release image tags, .env, the heartbeat dir) without the postgres service. A bot logs that it
 * started polling and touches /app/run/heartbeat every second; with `broken`, the master bot dies on start
 * with a Traceback, as a Python bot with a bad config does.
 */
function writeBots(version: string, broken = false): void {
  copyFileSync('/bin/busybox', join(dir, 'busybox'))
  chmodSync(join(dir, 'busybox'), 0o755)
  writeFileSync(join(dir, 'VERSION'), `${version}\n`)
  writeFileSync(
    join(dir, 'bot.sh'),
    `#!/bin/busybox sh
trap 'echo "$BOT stopping"; exit 0' TERM INT
if [ "$BOT" = master_bot ] && [ -e /app/BROKEN ]; then
  echo 'Traceback (most recent call last):'
  echo '  File "/app/field_service/bots/master_bot/main.py", line 12, in <module>'
  echo "KeyError: 'MASTER_BOT_TOKEN'"
  exit 1
fi
echo "$BOT $(/bin/busybox cat /app/VERSION) started polling"
while true; do
  /bin/busybox touch /app/run/heartbeat
  /bin/busybox sleep 1 & wait $!
done
`
  )
  if (broken) writeFileSync(join(dir, 'BROKEN'), 'yes\n')
  else rmSync(join(dir, 'BROKEN'), { force: true })
  const files = broken ? 'bot.sh VERSION BROKEN' : 'bot.sh VERSION'
  writeFileSync(
    join(dir, 'Containerfile'),
    `FROM scratch
COPY busybox /bin/busybox
COPY ${files} /app/
CMD ["/bin/busybox", "sh", "/app/bot.sh"]
`
  )
  const service = (bot: string) => `  ${bot}:
    image: ${PROJECT}-${bot}:\${SAFE_DEPLOY_RELEASE:-dev}
    build: .
    environment: [BOT=${bot}]
    env_file: .env
    volumes: [./run:/app/run]
`
  writeFileSync(join(dir, 'docker-compose.yml'), `services:\n${service('admin_bot')}${service('master_bot')}`)
}

/** The images the bots' containers run, as {admin_bot, master_bot}. */
const botsOf = (release: string) => ({
  admin_bot: `${PROJECT}-admin_bot:${release}`,
  master_bot: `${PROJECT}-master_bot:${release}`
})

const rows = () => pg.tableHash(PROJECT, 'orders')

type Config = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

/** "Fill it in" as the page says, then the differences the file header lists. */
function fillIn(): void {
  const file = join(dir, 'safe-deploy.yml')
  const c = parse(readFileSync(file, 'utf8')) as Config
  // the page's edits
  c.hosts = [{ address: host.address, port: host.port, user: 'root' }]
  c.path = root
  c.stages.test = 'test -f bot.sh'
  delete c.stages.migrate
  const db = c.backup.databases[0] as Config
  delete db.container
  db.host = '127.0.0.1'
  db.port = pg.port
  c.backup.encrypt.recipients = [keys.recipient]
  // what a podman host and a test need (file header)
  c.env.PATH = `${engine.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`
  c.stages.restart = 'docker compose up -d --no-deps --force-recreate admin_bot master_bot'
  c.verify.command = [
    `test "$(docker ps -q --filter label=com.docker.compose.project=${PROJECT} --filter status=running | wc -l)" -eq 2`,
    `pg_isready -h 127.0.0.1 -p ${pg.port} -U ${PROJECT}`
  ]
  // podman-compose's `logs -n` is --names; its --tail is docker compose's -n
  c.logs.command = (c.logs.command as string).replace(' -n {lines}', ' --tail {lines}')
  c.verify.window = '2s'
  c.verify.heartbeat.max_age = '10s'
  writeFileSync(file, stringify(c))
  // on the server, once: shared/.env and the heartbeat dir
  host.run(`mkdir -p ${root}/shared/run && printf 'MASTER_BOT_TOKEN=x\\n' > ${root}/shared/.env`)
}

/** What each step's commands must have done, beyond their exit codes; `before` runs first. */
const outcomes: Record<string, { before?: () => void; after: (r: CliOutcome[]) => void }> = {
  init: {
    after: ([r]) => {
      expect(r?.stdout).toContain(
        'wrote safe-deploy.yml, .github/workflows/deploy.yml, .github/workflows/rollback.yml, .github/workflows/backup.yml'
      )
      expect(r?.stdout).toContain(SECRETS.join(', '))
      writeBots('v1')
      fillIn()
    }
  },
  secrets: {
    // the page exports exactly the variables init named
    after: () => expect(SECRETS.filter(n => env[n] !== undefined)).toEqual(SECRETS)
  },
  plan: {
    after: ([r]) => {
      expect(r?.stdout).toContain('docker compose build admin_bot master_bot')
      expect(r?.stdout).toContain('docker compose stop admin_bot master_bot')
    }
  },
  doctor: {
    // `docker compose` is checked with the config's env (its PATH finds the engine's docker)
    after: ([r]) => expect(r?.stdout).toMatch(/✓ tools: docker compose: /)
  },
  deploy: {
    after: ([r]) => {
      expect(r?.stderr).toContain('DEPLOYMENT SUCCESS')
      const [v1] = releasesOf(root) as [string]
      made.push(v1)
      expect(currentOf(root)).toBe(`releases/${v1}`)
      expect(engine.running(PROJECT)).toEqual(botsOf(v1))
      expect(existsSync(join(root, 'shared', 'run', 'heartbeat'))).toBe(true)
    }
  },
  'deploy-broken': {
    before: () => writeBots('v2', true),
    after: ([r, releases]) => {
      expect(r?.stderr).toContain('ROLLED BACK')
      const v1 = made[0] as string
      const v2 = releasesOf(root).find(x => !made.includes(x)) as string
      made.push(v2)
      expect(currentOf(root)).toBe(`releases/${v1}`)
      // the previous release's images serve again, not the broken build
      expect(engine.running(PROJECT)).toEqual(botsOf(v1))
      expect(historyOf(root).find(h => h.release === v2)?.bad).toBe(true)
      // kept for inspection, and `releases` says it is bad
      expect(releasesOf(root)).toContain(v2)
      expect(releases?.stdout.split('\n').find(l => l.includes(v2))).toMatch(/\bbad\b/)
      // the verdict says why, with the bot's Traceback: the log lines after a failed check, or the lines the
      // log scan matched, whichever check sees the crash first
      const stderr = r?.stderr ?? ''
      expect(stderr.slice(stderr.lastIndexOf('DEPLOYMENT FAILED'))).toMatch(
        /… [0-9a-f]{12} KeyError: 'MASTER_BOT_TOKEN'|matching .*: [0-9a-f]{12} Traceback \(most recent call last\)/
      )
      expect(r?.stderr).toMatch(
        /DEPLOYMENT FAILED at verify .*(verify command .*docker ps.* failed|show \d+ line\(s\) matching .*Traceback)/
      )
    }
  },
  logs: {
    after: ([r]) => {
      const lines = (r?.stdout ?? '').split('\n')
      expect(
        lines.some(l => l.startsWith(`${hostName} | `) && l.includes('admin_bot v1 started polling'))
      ).toBe(true)
      expect(
        lines.some(l => l.startsWith(`${hostName} | `) && l.includes('master_bot v1 started polling'))
      ).toBe(true)
    }
  },
  backup: {
    after: ([r]) => {
      expect(r?.stderr).toContain('BACKUP SUCCESS')
      // the backup's name on stdout, its files on the server: encrypted, each 0600 in a 0700 dir
      backupName = (r?.stdout ?? '').trim()
      expect(backupName).toMatch(/^field_service_\d{8}_\d{6}$/)
      const files = readdirSync(join(root, 'backups')).filter(f => f.startsWith(`${backupName}.`))
      expect(files).toEqual(
        expect.arrayContaining([`${backupName}.dump.age`, `${backupName}.sha256`, `${backupName}.meta.json`])
      )
      for (const f of files) expect((statSync(join(root, 'backups', f)).mode & 0o777).toString(8)).toBe('600')
      // download: true copied it to the laptop too
      expect(existsSync(join(dir, 'safe-deploy-logs', `${backupName}.dump.age`))).toBe(true)
      expect((statSync(join(root, 'backups')).mode & 0o777).toString(8)).toBe('700')
      rowsAtBackup = rows()
    }
  },
  backups: {
    after: ([r]) => {
      expect(r?.stdout).toContain(backupName)
      // the accident the page describes: a bad UPDATE wipes the table
      pg.psql('DELETE FROM orders', PROJECT)
      expect(rows()).not.toBe(rowsAtBackup)
    }
  },
  restore: {
    after: ([r]) => {
      expect(r?.stderr).toContain(`restored ${backupName}.dump.age`)
      expect(r?.stderr).toContain('RESTORE SUCCESS')
      expect(rows()).toBe(rowsAtBackup)
      expect(pg.psql('SELECT count(*) FROM orders', PROJECT).trim()).toBe('500')
    }
  },
  'deploy-fixed': {
    before: () => writeBots('v3'),
    after: ([r]) => {
      expect(r?.stderr).toContain('DEPLOYMENT SUCCESS')
      const v3 = releasesOf(root).find(x => !made.includes(x)) as string
      made.push(v3)
      expect(currentOf(root)).toBe(`releases/${v3}`)
      expect(engine.running(PROJECT)).toEqual(botsOf(v3))
    }
  },
  rollback: {
    after: ([dry, r]) => {
      const [v1, , v3] = made as [string, string, string]
      expect(dry?.stdout).toContain(`rollback from ${v3} to ${v1}`)
      expect(dry?.stdout).toContain('nothing was changed')
      expect(r?.stderr).toContain('ROLLBACK SUCCESS')
      expect(currentOf(root)).toBe(`releases/${v1}`)
      expect(engine.running(PROJECT)).toEqual(botsOf(v1))
    }
  }
}

describe('a newcomer follows docs/guides/docker-bots.md', () => {
  test('the page has the walk this test knows, in order', () => {
    expect(STEPS.map(s => s.id)).toEqual(KNOWN)
    expect(Object.keys(outcomes)).toEqual(KNOWN)
  })

  for (const step of STEPS) {
    test(`walk: ${step.id}`, async () => {
      const outcome = outcomes[step.id]
      if (!outcome) throw new Error(`the page has a walk step "${step.id}" this test does not know`)
      outcome.before?.()
      const results: CliOutcome[] = []
      for (const line of step.lines) {
        if (line.kind === 'export') {
          exported(line.name)
          continue
        }
        // the page's example backup name is the one the walk made
        const argv = line.argv.map(a => (/^field_service_\d{8}_\d{6}$/.test(a) ? backupName : a))
        const r = await run(argv)
        expectCode(r, line.exit, line.text)
        results.push(r)
      }
      outcome.after(results)
    }, 300_000)
  }
})

/** An `export NAME=...` line: the variables init named, set to the test's values. */
function exported(name: string): void {
  const values: Record<string, string> = {
    SSH_KEY: host.privateKey,
    KNOWN_HOSTS: host.knownHostsLine,
    POSTGRES_PASSWORD: PASSWORD,
    AGE_IDENTITY: keys.identity
  }
  const value = values[name]
  if (value === undefined) throw new Error(`the page exports ${name}, which init did not name`)
  env[name] = value
}
