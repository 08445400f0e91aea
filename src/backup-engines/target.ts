import { sh } from '../commands/quote.js'
import type { Connection } from './connection.js'
import type { Compression } from './name.js'

import type { EngineId } from './index.js'

export type Engine = EngineId

/** One database to back up, resolved from `backup.databases[i]`. */
export interface Target {
  index: number
  engine: Engine
  /** For people: the database name, the SQLite file, or `name:` from the config. */
  label: string
  /** In artifact names when a backup holds several databases (`NAME.<fileLabel>.dump`). */
  fileLabel?: string
  conn: Connection
  /**
   * The shell variable that holds the password inside a script (never exported, never in argv): the
   * script reads it from the environment variable `SD_DB<i>_PASSWORD` and unsets that first thing.
   */
  passwordVar?: string
  /** SQLite: the database file, absolute (on the host, or inside the container). */
  path?: string
  /** Run the tools in a compose service: `cd <dir> && docker compose exec -T <service> ...`. */
  container?: { service: string; dir: string }
  compress: Compression
}

/** Client programs found on the host (or in the container); MariaDB ships mariadb-dump, MySQL mysqldump. */
export interface Tools {
  dump: string
  client: string
}

/** An environment assignment: the value is a literal (quoted here) or a `"$var"` reference to a secret. */
export type EnvPair = [name: string, value: { literal: string } | { variable: string }]

function envWord([name, value]: EnvPair): string {
  return 'literal' in value ? `${name}=${sh(value.literal)}` : `${name}="$${value.variable}"`
}

/**
 * A command line with its environment as prefix assignments (they reach the program's environment, not
 * its argv). In a compose service the variables are set for `docker` and passed in by name with `-e NAME`
 * (Compose v2.1.1+ reads the value from its own environment), so no value appears on any command line.
 */
export function runIn(t: Target, env: EnvPair[], argv: string): string {
  const prefix = env.map(envWord).join(' ')
  if (!t.container) return prefix ? `${prefix} ${argv}` : argv
  const passed = env.map(([n]) => `-e ${n} `).join('')
  const exec = `docker compose exec -T ${passed}${sh(t.container.service)} ${argv}`
  return `cd ${sh(t.container.dir)} && ${prefix ? `${prefix} ` : ''}${exec}`
}

/** A program run with `sh -c SCRIPT sh ARGS...` on the host (with TMPDIR set) or in the container. */
export function shellIn(t: Target, env: EnvPair[], inner: string, args: string[], tmpdir: string): string {
  const argv = `sh -c ${sh(inner)} sh ${args.map(sh).join(' ')}`
  if (t.container) return runIn(t, env, argv)
  return runIn(t, [['TMPDIR', { variable: tmpdir }], ...env], argv)
}
