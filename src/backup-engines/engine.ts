import type { DatabaseConfig } from './config.js'
import type { Connection } from './connection.js'
import type { Target, Tools } from './target.js'

/**
 * What a backup engine provides. The generic code (config checks, the plan, the scripts in script.ts,
 * the probe in ops/probe.ts, artifact names in name.ts) asks the engine through this interface and never
 * names an engine; adding one is a file in this folder and a line in engines/index.ts.
 */

/** A command in a pipeline and what to call it in an error. */
export interface Step {
  label: string
  cmd: string
}

/** The shell variables the backup scripts define: `$t`, a private temp dir; `$w`, the data's work dir. */
export const SCRATCH_VAR = 't'
export const WORK_VAR = 'w'

/** One kind of file in a backup (a database dump, the files archive): its name and its check. */
export interface ArtifactFormat {
  /** The base extension: `dump` gives NAME.dump, `sql` NAME.sql.gz. */
  ext: string
  /** safe-deploy compresses it (gzip, zstd, none); false: the tool compresses (pg_dump -Fc). */
  compressible: boolean
  /** A failed restore changes nothing (one transaction, the backup API): no safety backup is needed to undo it. */
  atomicRestore: boolean
  /**
   * Reads the artifact's plain bytes on stdin and fails when it is not whole. `t` is the configured
   * database; undefined for the files archive, or when no configured database matches the artifact any
   * more (then the host's own tools check it, see hostTarget). `scratch` prefixes scratch file paths.
   */
  check(t: Target | undefined, file: string, scratch: string): Step
  /** Prints `TABLE=<file> <name>` for each table in the artifact, from the scratch files of its check. */
  tables?(file: string, scratch: string): string
}

/** How an engine reads a connection URL (`postgres://...`). */
export interface UrlSpec {
  /** URL schemes it accepts, with the colon: `postgres:`. */
  schemes: string[]
  /** Applies one query parameter to the connection; returns the error for an unknown one. */
  param(key: string, value: string, conn: Connection): string | undefined
}

/** What the generic config check gives an engine's own check. */
export interface ValidateContext {
  /** `backup.databases[i]` */
  at: string
  /** Whether the URL was already reported as not parsing. */
  urlFailed: boolean
  /** The resolved connection; undefined when it does not resolve. */
  connection(): Connection | undefined
}

/** Helpers for the probe lines of one target; each prints `DB_<KEY>=<index> <value>` lines. */
export interface ProbeHelpers {
  /** What starts the line of one of this target's keys: `DB_TOOL=0 ` (then the value). */
  key(name: string): string
  /** Prints TOOL=<tool> <first line of --version>, or MISSING=<tool> <what it said>. */
  version(tool: string): string
  /** Runs `cmd`: SERVER=<its output>, or ERROR= lines. */
  server(cmd: string): string
}

/** What the probe printed for one target, read back. */
export interface ProbeReading {
  /** The target's lines by key: `DB_DUMP=0 mariadb-dump` is `DUMP` -> `mariadb-dump`. */
  kv: Map<string, string[]>
  /** Tool name to the first line of its `--version`. */
  tools: Map<string, string>
  missing: string[]
  server?: string
  error: string
  /** `on web1` or `in compose service db on web1`. */
  where: string
  /** describeTarget(t) */
  what: string
}

/** Where an engine's probe reading goes. */
export interface ProbeSink {
  problem(message: string): void
  size(bytes: number): void
  tools(tools: Tools): void
  warn(message: string): void
}

/** Builds a restore script: the steps run as pipelines, each checked (script.ts restoreScript). */
export interface RestoreBuilder {
  /** Decryption and decompression, to put in front of the engine's restore. */
  head: Step[]
  /** The artifact on the host, a shell word. */
  from: string
  file: string
  run(steps: Step[], io: { from?: string; to?: string }): void
  /** A line of the script as it is. */
  line(text: string): void
}

export interface BackupEngine extends ArtifactFormat {
  /** Its name in `backup.databases[].engine`. */
  id: string
  /** For people: `PostgreSQL`. */
  title: string
  /** The client programs when the probe did not pick others. */
  defaultTools: Tools
  /** When the engine reaches a server by URL; undefined: it takes a path. */
  url?: UrlSpec
  /** The problems in one database entry that are this engine's to find (with key paths). */
  validate(db: DatabaseConfig, c: ValidateContext): string[]
  /** The label of a database without `name:`; undefined: `db<i>`. */
  defaultLabel(db: DatabaseConfig, connection: () => Connection | undefined): string | undefined
  /** Writes the dump to stdout. */
  dump(t: Target, tools: Tools): Step
  /** Restores the artifact into the live database. */
  restore(t: Target, tools: Tools, r: RestoreBuilder): void
  /** Probe lines: tools, versions, SERVER= (version and size) or ERROR=. */
  probe(t: Target, h: ProbeHelpers): string[]
  /** Turns the probe's lines into problems a person can act on, the size and the tools found. */
  readProbe(t: Target, r: ProbeReading, out: ProbeSink): void
}

/** For an artifact no configured database matches any more: the host's own tools. */
export function hostTarget(engine: Target['engine']): Target {
  return { index: -1, engine, label: '?', conn: { params: {} }, compress: 'none' }
}

/** A path inside the deploy root: relative, no `..`, no NUL or line breaks. */
export const isRelativeSafe = (p: string) =>
  p.length > 0 && !p.startsWith('/') && !p.split('/').includes('..') && !/[\0\n\r]/.test(p)

/** The checks shared by engines that reach a server (PostgreSQL, MySQL). */
export function validateServerDatabase(db: DatabaseConfig, c: ValidateContext): string[] {
  const problems: string[] = []
  if (!c.connection()?.database && !c.urlFailed)
    problems.push(`${c.at}.database: name the database to back up (database: app, or a URL ending in /app)`)
  if (db.path) problems.push(`${c.at}.path: only for engine sqlite`)
  return problems
}

/** `PostgreSQL database "app"`: how errors and logs name a target (engines/index.ts describeTarget). */
export function describeDatabase(title: string, t: Target): string {
  return `${title} database ${JSON.stringify(t.label)}${t.container ? ` (compose service ${t.container.service})` : ''}`
}

export const majorOf = (v: string) => Number(/(\d+)(?:\.\d+)?/.exec(v)?.[1])
