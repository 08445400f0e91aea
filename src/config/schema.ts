import { z } from 'zod'
import { parseDuration } from './duration.js'
import { backupSchema } from '../backup-engines/config.js'
import { notifySchema } from './notify.js'

/** A duration such as `1s`, `500ms`, `10m`, or a number of seconds; parsed to milliseconds. */
const duration = z
  .union([z.string(), z.number()])
  .transform((value, ctx) => {
    const ms = parseDuration(value)
    if (ms === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `expected a duration like 1s, 500ms or 10m, got ${JSON.stringify(value)}`
      })
      return z.NEVER
    }
    return ms
  })
  .meta({ description: 'A duration: 500ms, 10s, 2m, 1h, or a number of seconds' })

const noControl = (what: string) =>
  z.string().refine(s => !/[\0\n\r]/.test(s), { message: `${what} must not contain NUL or line breaks` })

/** Control characters and line/paragraph separators: what would break a log line in two or forge one. */
const CONTROL = /[\p{Cc}\u2028\u2029]/u

/** One printable line (host names, addresses, users): they end up in every log line. */
const printable = (what: string) =>
  z
    .string()
    .min(1)
    .refine(s => !CONTROL.test(s), {
      message: `${what} must be one printable line (no line breaks, tabs or other control characters)`
    })

/** `C:\` or `C:/`: a Windows path, for a local host on a Windows runner only (config/load.ts checks). */
export const WINDOWS_DRIVE = /^[A-Za-z]:[\\/]/

/**
 * A deploy root in normal form, or why it is refused. Repeated slashes, `.` segments and a trailing slash
 * are normalised away (`/srv//app/./` is `/srv/app`); `..` segments and relative paths are refused, and so is
 * anything that normalises to `/` (`//`, `/.`, `/./`).
 */
function normaliseRootPath(p: string): { path: string } | { error: string } {
  if (/[\0\n\r]/.test(p)) return { error: 'must not contain NUL or line breaks' }
  // a Windows runner's own dir for a local host: `C:\deploy\app` is `C:/deploy/app` (Git for Windows' sh reads it)
  const drive = WINDOWS_DRIVE.exec(p)?.[0]
  if (!drive && !p.startsWith('/'))
    return { error: `expected an absolute path such as /srv/app, got ${JSON.stringify(p)}` }
  const parts = (drive ? p.slice(drive.length).replace(/\\/g, '/') : p)
    .split('/')
    .filter(part => part !== '' && part !== '.')
  if (drive) {
    if (parts.includes('..') || !parts.length)
      return { error: `expected a deploy root such as C:\\deploy\\app, got ${JSON.stringify(p)}` }
    return { path: `${drive.slice(0, 2).toUpperCase()}/${parts.join('/')}` }
  }
  if (parts.includes('..'))
    return { error: `expected a path without .. segments such as /srv/app, got ${JSON.stringify(p)}` }
  if (!parts.length)
    return { error: `${JSON.stringify(p)} is the root directory; expected a deploy root such as /srv/app` }
  return { path: `/${parts.join('/')}` }
}

/** A deploy root: absolute, normalised, not `/`. */
const rootPath = z.string().transform((p, ctx) => {
  const r = normaliseRootPath(p)
  if ('error' in r) {
    ctx.addIssue({ code: 'custom', message: r.error })
    return z.NEVER
  }
  return r.path
})

/** A path inside the release or shared dir: relative, no `..`, no leading slash. */
const relativePath = noControl('a relative path')
  .min(1)
  .refine(p => !p.startsWith('/') && !p.split('/').includes('..') && p !== '.', {
    message: 'expected a path relative to the release, without `..` and not starting with /'
  })

/** A role name: what `hosts[].roles`, `roles:` and `--roles` speak of. */
const roleName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'expected a role name: letters, digits, `.`, `_` or `-`')

const hostRoles = z
  .array(roleName)
  .optional()
  .describe('Roles of this host (web, worker, bot): select with --roles, override settings under roles:')

const sshHost = z
  .object({
    name: printable('a host name').optional().describe('Name used in logs (default: address)'),
    address: printable('an address').describe('Host name or IP address'),
    port: z.number().int().min(1).max(65535).default(22),
    user: printable('a user').default('root'),
    path: rootPath.optional().describe('Deploy root on this host, when it differs from the top-level path'),
    primary: z.boolean().optional().describe('The host that holds the lock and runs backups and migrations'),
    roles: hostRoles
  })
  .strict()

const localHost = z
  .object({
    local: z.literal(true).describe('Run on this machine without SSH (self-hosted runners, the demo)'),
    name: printable('a host name').optional(),
    path: rootPath
      .optional()
      .describe('Deploy root on this machine, when it differs from the top-level path'),
    primary: z.boolean().optional(),
    roles: hostRoles
  })
  .strict()

export const hostSchema = z.union([localHost, sshHost])

const httpCheck = z
  .object({
    url: z
      .string()
      .refine(u => /^https?:\/\//.test(u) && URL.canParse(u.replace(/\{host\}/g, 'host.invalid')), {
        message: 'expected an http:// or https:// URL'
      })
      .describe("URL to GET; {host} is replaced by each host's address"),
    expect_status: z.number().int().min(100).max(599).default(200),
    contains: z.string().optional().describe('Text the response body must contain'),
    retries: z.number().int().min(1).max(1000).default(10),
    interval: duration.default(1000),
    timeout: duration.default(5000),
    headers: z
      .record(z.string().regex(/^[A-Za-z0-9-]+$/, 'expected a header name'), noControl('a header value'))
      .default({})
      .describe('Request headers, e.g. Host: shop.example for a virtual host'),
    from: z.enum(['host', 'runner']).default('host')
  })
  .strict()

const port = z.number().int().min(1).max(65535)

/** A key a strategy cannot run without: zod's message for a missing one names the strategy. */
const requiredFor = (strategy: string) =>
  z.string({
    error: issue => (issue.input === undefined ? `required for strategy ${strategy}` : undefined)
  })

const STRATEGIES = ['symlink', 'graceful', 'blue-green'] as const

/** The strategies whose settings have `key` (read when a message is made: the variants are defined below). */
const ownersOf = (key: string): string[] =>
  Object.entries({ graceful: gracefulSwitch, 'blue-green': blueGreenSwitch })
    .filter(([, v]) => key !== 'strategy' && key in v.shape)
    .map(([name]) => name)

/** A strategy's own keys and nothing else: a key of another strategy says which one it belongs to. */
const strategySettings = <T extends z.core.$ZodLooseShape>(strategy: string, shape: T) =>
  z.strictObject(shape, {
    error: issue => {
      if (issue.code !== 'unrecognized_keys') return undefined
      const keys = issue.keys.map(k => JSON.stringify(k)).join(', ')
      const owners = [...new Set(issue.keys.flatMap(k => ownersOf(String(k))))]
      return `Unrecognized key${issue.keys.length > 1 ? 's' : ''}: ${keys}${owners.length ? ` (for strategy ${owners.join(' or ')}; this switch is ${strategy})` : ''}`
    }
  })

/** symlink: switch `current`, then run stages.restart. The default strategy. */
const symlinkSwitch = strategySettings('symlink', {
  strategy: z
    .literal('symlink')
    .default('symlink')
    .describe(
      'symlink: switch current, run stages.restart; graceful: switch current, run reload; blue-green: see docs'
    )
})

/** graceful: switch `current`, then run `reload` (the app picks up the new code without a restart). */
const gracefulSwitch = strategySettings('graceful', {
  strategy: z.literal('graceful'),
  reload: requiredFor('graceful')
    .min(1)
    .describe('graceful: e.g. `systemctl reload shop` or `kill -HUP $(cat app.pid)`')
})

/** blue-green (docs/blue-green.md): two ports per host, a health gate, the proxy's upstream file flipped. */
const blueGreenSwitch = strategySettings('blue-green', {
  strategy: z.literal('blue-green'),
  ports: z
    .tuple([port, port], {
      error: issue => (issue.input === undefined ? 'required for strategy blue-green' : undefined)
    })
    .refine(p => p[0] !== p[1], { message: 'expected two different ports' })
    .describe('blue-green: the pair of ports the app alternates between'),
  start: requiredFor('blue-green')
    .min(1)
    .describe('blue-green: starts the release on {port} (runs inside the release; PORT is set too)'),
  stop: requiredFor('blue-green')
    .min(1)
    .describe('blue-green: stops whatever serves {port} (runs inside the release that serves it)'),
  health: z
    .string()
    .default('http://127.0.0.1:{port}/health')
    .describe('blue-green: URL that must answer 200 on the new port before traffic moves'),
  upstream_file: requiredFor('blue-green').describe(
    'blue-green: file we write for the proxy, e.g. /etc/nginx/conf.d/shop-upstream.conf'
  ),
  upstream_template: z
    .string()
    .default('server 127.0.0.1:{port};')
    .describe('blue-green: the upstream file content; {port} is the live port'),
  proxy_reload: requiredFor('blue-green').min(1).describe('blue-green: e.g. `nginx -t && nginx -s reload`'),
  drain: duration
    .default(2000)
    .describe('blue-green: wait after moving traffic before stopping the old port'),
  timeout: duration.default(60_000).describe('blue-green: how long the new port may take to become healthy')
}).strict()

/**
 * How a release goes live: one variant per strategy, each with its own settings, validated here once. A new
 * strategy is a variant here, one file implementing SwitchStrategy and one line in src/pipeline/switch.ts.
 */
export const switchSchema = z
  .discriminatedUnion('strategy', [symlinkSwitch, gracefulSwitch, blueGreenSwitch], {
    error: issue =>
      issue.code === 'invalid_union'
        ? `Invalid option: expected one of ${STRATEGIES.map(s => JSON.stringify(s)).join('|')}`
        : undefined
  })
  .default({ strategy: 'symlink' })

/** The health checks of verify (top level, and per role under roles:). */
export const verifySchema = z
  .object({
    http: z.union([httpCheck, z.array(httpCheck)]).optional(),
    command: z
      .union([z.string().min(1), z.array(z.string().min(1))])
      .optional()
      .describe(
        'Commands run on each host inside the release (systemctl is-active shop, pg_isready); exit 0 = healthy'
      ),
    logs: z
      .object({
        command: z
          .string()
          .min(1)
          .optional()
          .describe(
            'Prints recent logs; {started} is the run start in epoch seconds. Default: logs.command with {since} the run start'
          ),
        fail_on: z.array(z.string().min(1)).min(1).default(['CRITICAL', 'Traceback', 'FATAL']),
        preset: z
          .enum(['telegram-polling'])
          .optional()
          .describe(
            'telegram-polling: also fail on a 409 Conflict from getUpdates (two instances polling one token)'
          )
      })
      .strict()
      .optional()
      .describe('Fails verify when the logs since the run started contain one of fail_on'),
    heartbeat: z
      .object({
        file: relativePath.describe(
          'A file the app touches while it works (a bot: on every poll), relative to the release dir (link it from shared)'
        ),
        max_age: duration.describe('The check fails when the file is older than this, or missing')
      })
      .strict()
      .optional()
      .describe(
        'Passes when the file was touched after the switch and within max_age, by the host clock; waits up to max_age for the first beat'
      ),
    window: duration
      .default(0)
      .describe(
        'After the checks pass, watch this long and check again: catches an app that crashes soon after start'
      )
  })
  .strict()

/** A batch size: a number of hosts or a share of them ("25%"). */
const batchSize = z.union([
  z.number().int().min(1).max(10_000),
  z.string().regex(/^(100|[1-9][0-9]?)%$/, 'expected a share of the hosts from 1% to 100%, e.g. "25%"')
])

/** What a role changes for its hosts: each key given replaces the top-level one for them (not merged). */
const roleOverride = z
  .object({
    stages: z
      .object({
        restart: z.string().min(1).optional().describe("Runs on this role's hosts instead of stages.restart")
      })
      .strict()
      .optional(),
    switch: switchSchema.unwrap().optional().describe("This role's switch, instead of the top-level one"),
    verify: verifySchema.optional().describe("This role's checks, instead of the top-level verify")
  })
  .strict()

/** How a release goes live across the hosts: batch by batch, switch then verify, a pause between. */
const rolloutSchema = z
  .object({
    batch: z
      .union([batchSize, z.array(batchSize).min(1)])
      .default(1)
      .describe(
        'Hosts switched and verified at a time: a number, a share ("25%"), or a ramp ([1, "50%", "100%"]: the last size repeats)'
      ),
    wait: duration.default(0).describe('Pause between batches, after a batch verified (e.g. 10s)')
  })
  .strict()

/** How the source gets to the hosts: one variant per upload strategy (src/pipeline/upload/). */
export const uploadSchema = z
  .discriminatedUnion(
    'strategy',
    [
      z.strictObject({
        strategy: z
          .literal('tar')
          .default('tar')
          .describe('tar: pack source.dir once on the runner, stream it to each host over SSH')
      }),
      z.strictObject({
        strategy: z
          .literal('incremental')
          .describe(
            'incremental: send only the files that changed since the previous release; the others are hard-linked from it on the host'
          )
      })
    ],
    {
      error: issue =>
        issue.code === 'invalid_union' ? 'Invalid option: expected one of "tar", "incremental"' : undefined
    }
  )
  .default({ strategy: 'tar' })

export const configSchema = z
  .object({
    app: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'expected letters, digits, `.`, `_` or `-` (at most 64)')
      .describe('Application name, used in lock owner, logs and backup names'),
    path: rootPath.describe('Deploy root on each host: releases/, current, shared/, .safe-deploy/'),
    hosts: z.array(hostSchema).min(1),
    ssh: z
      .object({
        private_key: z.string().optional().describe('Private key (use env:NAME)'),
        private_key_file: z.string().optional(),
        passphrase: z.string().optional(),
        agent: z
          .string()
          .min(1)
          .default('auto')
          .describe(
            'ssh-agent to use: auto (SSH_AUTH_SOCK or the Windows OpenSSH agent, when no key is given), off, pageant, or a socket path'
          ),
        known_hosts: z.string().optional().describe('known_hosts lines (OpenSSH format)'),
        known_hosts_file: z.string().optional(),
        fingerprints: z.array(z.string()).default([]).describe('Accepted host key fingerprints (SHA256:...)'),
        insecure_skip_host_key_check: z.boolean().default(false),
        connect_timeout: duration.default(10_000),
        connect_retries: z.number().int().min(0).max(20).default(3),
        keepalive_interval: duration.default(10_000),
        command_timeout: duration.default(600_000),
        jump: z
          .object({
            address: printable('an address').describe('Host name or IP address of the bastion'),
            port: z.number().int().min(1).max(65535).default(22),
            user: printable('a user').default('root'),
            private_key: z
              .string()
              .optional()
              .describe("Key for the bastion (use env:NAME); default: the hosts' key"),
            private_key_file: z.string().optional(),
            passphrase: z.string().optional()
          })
          .strict()
          .optional()
          .describe(
            "Jump host (ProxyJump): every SSH host is reached through it; its host key is checked like a host's"
          )
      })
      .strict()
      .default({
        agent: 'auto',
        fingerprints: [],
        insecure_skip_host_key_check: false,
        connect_timeout: 10_000,
        connect_retries: 3,
        keepalive_interval: 10_000,
        command_timeout: 600_000
      }),
    source: z
      .object({
        dir: z.string().min(1).default('.'),
        exclude: z.array(z.string().min(1)).default(['.git', 'node_modules']),
        executable: z
          .array(z.string().min(1))
          .optional()
          .describe(
            'Files uploaded with mode 0755 whatever the file system says (bin/*, scripts/*.sh); same patterns as exclude. For Windows runners, where files have no executable bit'
          )
      })
      .strict()
      .default({ dir: '.', exclude: ['.git', 'node_modules'] }),
    upload: uploadSchema.describe('How the source gets to the hosts (default: tar)'),
    shared: z
      .object({
        files: z.array(relativePath).default([]),
        dirs: z.array(relativePath).default([])
      })
      .strict()
      .default({ files: [], dirs: [] }),
    keep_releases: z.number().int().min(2).max(100).default(5),
    roles: z
      .record(roleName, roleOverride)
      .default({})
      .describe('Per-role overrides of stages.restart, switch and verify, by role name'),
    max_parallel: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(10)
      .describe('Hosts staged (upload, build) at once'),
    rollout: rolloutSchema
      .optional()
      .describe('Switch and verify the hosts batch by batch (default: all hosts together, after all staged)'),
    env: z
      .record(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'),
        z.string()
      )
      .default({})
      .describe('Environment for commands on the hosts; values travel over stdin, never argv'),
    build_reuse: z
      .object({
        paths: z
          .array(relativePath)
          .min(1)
          .describe('Dirs the build makes (node_modules, .venv, vendor), relative to the release'),
        key_files: z
          .array(relativePath)
          .min(1)
          .describe('Files in source.dir whose content decides (package-lock.json, poetry.lock)')
      })
      .strict()
      .optional()
      .describe(
        'Before the build, hard-link these dirs from the previous release when the key files are unchanged'
      ),
    stages: z
      .object({
        test: z.string().min(1).optional().describe('Runs on the runner before anything touches a server'),
        build_local: z
          .string()
          .min(1)
          .optional()
          .describe(
            'Runs on the runner after test, in a staging copy of source.dir; what it leaves there is packed and uploaded (a fleet builds once)'
          ),
        build: z.string().min(1).optional().describe('Runs on each host inside the new release'),
        restart: z
          .string()
          .min(1)
          .optional()
          .describe('Runs on each host inside the new release after the switch'),
        stop: z
          .string()
          .min(1)
          .optional()
          .describe(
            'symlink/graceful: stops the running instance before the switch (runs inside the release that serves), so old and new never run at once (long-polling bots); a rollback stops the new one the same way before restarting the old'
          ),
        prune: z
          .string()
          .min(1)
          .optional()
          .describe(
            'Runs inside each release dir about to be removed (SAFE_DEPLOY_RELEASE is that release): docker image rm app-web:$SAFE_DEPLOY_RELEASE; a failure is a warning'
          ),
        migrate: z
          .union([
            z
              .string()
              .min(1)
              .transform((command): { command: string; revision?: string; down?: string } => ({ command })),
            z
              .object({
                command: z.string().min(1).describe('e.g. alembic upgrade head, php artisan migrate --force'),
                revision: z
                  .string()
                  .min(1)
                  .optional()
                  .describe(
                    'Prints the current revision (alembic current); recorded in history before migrating'
                  ),
                down: z
                  .string()
                  .min(1)
                  .optional()
                  .describe(
                    'Undoes the migration; {revision} is the recorded one (alembic downgrade {revision})'
                  )
              })
              .strict()
          ])
          .optional()
          .describe(
            'Runs on the primary inside the new release (shared files linked), after deploy, before switch'
          )
      })
      .strict()
      .default({}),
    hooks: z
      .object({
        before_switch: z
          .string()
          .min(1)
          .optional()
          .describe(
            'Runs on each host inside the release about to go live, just before that host switches (php artisan down); a failure fails the switch there before it switches'
          ),
        after_verify: z
          .string()
          .min(1)
          .optional()
          .describe(
            'Runs on each host inside the new release after its checks passed (php artisan up, cache warm-up); a failure is a warning'
          ),
        after_rollback: z
          .string()
          .min(1)
          .optional()
          .describe(
            'Runs on each host inside the release a rollback put back (automatic or `rollback`), after it was restored; a failure is a warning'
          )
      })
      .strict()
      .default({})
      .describe(
        "Commands at named points of a run, with SAFE_DEPLOY_HOOK and the run's SAFE_DEPLOY_* variables"
      ),
    cache: z
      .object({
        paths: z
          .array(relativePath)
          .min(1)
          .describe(
            'Paths inside source.dir restored before stages.build_local and saved after it (node_modules, vendor)'
          ),
        key_files: z
          .array(relativePath)
          .min(1)
          .describe('Files inside source.dir whose sha256 keys the cache (package-lock.json, composer.lock)')
      })
      .strict()
      .optional()
      .describe('A runner-side cache for stages.build_local (CLI: a local dir; Action: the GitHub cache)'),
    redeploy: z
      .boolean()
      .default(false)
      .describe(
        'Deploying the commit of an older release builds it anew; by default (false) the deploy rolls back to that release'
      ),
    rollback: z
      .object({
        database: z
          .enum(['restore', 'down', 'none'])
          .optional()
          .describe(
            'How a rollback puts the database back: restore the pre-deploy backup, run stages.migrate.down, or leave it. Default: down when migrate.down and migrate.revision are set, else restore when backups are on, else none'
          )
      })
      .strict()
      .default({}),
    switch: switchSchema,
    verify: verifySchema.default({ window: 0 }),
    backup: z
      .union([z.literal(false), backupSchema])
      .optional()
      .describe('Backups before every deploy; false opts out'),
    logs: z
      .object({
        command: z
          .string()
          .min(1)
          .describe(
            'Prints the app logs on a host: journalctl -u shop --since {since} -n {lines}, docker compose logs --since {since} -n {lines} bot, tail -n {lines} shared/logs/app.log'
          ),
        follow: z
          .string()
          .min(1)
          .optional()
          .describe('The command for --follow (default: command with -f appended)')
      })
      .strict()
      .optional()
      .describe('`safe-deploy logs`: the command run on each host, inside current'),
    lock: z
      .object({ ttl: duration.default(1_800_000) })
      .strict()
      .default({ ttl: 1_800_000 }),
    log_dir: z.string().min(1).default('safe-deploy-logs'),
    notify: notifySchema
  })
  .strict()

export type RawConfig = z.input<typeof configSchema>
export type Config = z.output<typeof configSchema>
export type HttpCheck = z.output<typeof httpCheck>
export type VerifyConfig = z.output<typeof verifySchema>
export type RoleOverride = z.output<typeof roleOverride>
export type RolloutConfig = z.output<typeof rolloutSchema>
export type SwitchConfig = z.output<typeof switchSchema>
/** The settings of one switch strategy, e.g. `SwitchSettings<'blue-green'>`. */
export type SwitchSettings<K extends SwitchConfig['strategy']> = Extract<SwitchConfig, { strategy: K }>
export type UploadConfig = z.output<typeof uploadSchema>
