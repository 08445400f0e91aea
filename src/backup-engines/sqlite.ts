import {
  describeDatabase,
  hostTarget,
  isRelativeSafe,
  WORK_VAR,
  SCRATCH_VAR,
  type BackupEngine
} from './engine.js'
import { shellIn, type Target } from './target.js'

/**
 * SQLite: the online backup API (`.backup`) copies a consistent snapshot even while the app writes,
 * `PRAGMA integrity_check` must answer `ok` on the copy, and `.restore` writes it back through the same
 * API (the app's open connections see the change atomically, unlike a file copy under a live database).
 * The same small scripts run on the host (temp files next to the backups) or in a compose service.
 */
const CHECK_COPY =
  'r=$(sqlite3 "$1" "PRAGMA integrity_check" 2>&1) && [ "$r" = ok ] || { printf "PRAGMA integrity_check: %s\\n" "$r" >&2; exit 1; }'

const DUMP = [
  'set -e',
  't=$(mktemp -d)',
  `trap 'rm -rf "$t"' EXIT`,
  'db=$1',
  '[ -f "$db" ] || { echo "$db does not exist" >&2; exit 1; }',
  'cd "$t"',
  'sqlite3 "$db" ".timeout 10000" ".backup copy.sqlite3"',
  'set -- copy.sqlite3',
  CHECK_COPY,
  'cat copy.sqlite3'
].join('\n')

const CHECK = [
  't=$(mktemp -d) || exit 1',
  `trap 'rm -rf "$t"' EXIT`,
  'cat > "$t/check.sqlite3" || exit 1',
  'set -- "$t/check.sqlite3"',
  CHECK_COPY
].join('\n')

const RESTORE = [
  'set -e',
  't=$(mktemp -d)',
  `trap 'rm -rf "$t"' EXIT`,
  'db=$1',
  'cat > "$t/restore.sqlite3"',
  'set -- "$t/restore.sqlite3"',
  CHECK_COPY,
  'cd "$t"',
  'sqlite3 "$db" ".timeout 10000" ".restore restore.sqlite3"',
  `r=$(sqlite3 "$db" "PRAGMA integrity_check" 2>&1) && [ "$r" = ok ] || { printf "after restore, PRAGMA integrity_check: %s\\n" "$r" >&2; exit 1; }`
].join('\n')

const SIZE = '[ -f "$1" ] || { echo "$1 does not exist" >&2; exit 1; }; stat -c %s "$1"'

/** Writes a checked copy of the database to stdout. `tmpdir` names the shell variable of a work dir. */
export function sqliteDump(t: Target, tmpdir: string): string {
  return shellIn(t, [], DUMP, [t.path ?? ''], tmpdir)
}

/** Reads a database file on stdin; passes when its integrity check says ok. */
export function sqliteCheck(t: Target, tmpdir: string): string {
  return shellIn(t, [], CHECK, [], tmpdir)
}

/** Reads a database file on stdin, checks it, and restores it over the live database. */
export function sqliteRestore(t: Target, tmpdir: string): string {
  return shellIn(t, [], RESTORE, [t.path ?? ''], tmpdir)
}

/** The database file's size in bytes. */
function sqliteSize(t: Target, tmpdir: string): string {
  return shellIn(t, [], SIZE, [t.path ?? ''], tmpdir)
}

const describe = (t: Target) => describeDatabase('SQLite', t)

export const sqlite: BackupEngine = {
  id: 'sqlite',
  title: 'SQLite',
  ext: 'sqlite3',
  compressible: true,
  atomicRestore: true,
  defaultTools: { dump: 'sqlite3', client: 'sqlite3' },
  validate(db, { at }) {
    const problems: string[] = []
    if (!db.path) problems.push(`${at}.path: the SQLite database file is required for engine sqlite`)
    else if (db.container && !db.path.startsWith('/'))
      problems.push(`${at}.path: inside a container the SQLite path must be absolute`)
    else if (!db.path.startsWith('/') && !isRelativeSafe(db.path))
      problems.push(`${at}.path: expected an absolute path or one relative to the deploy root, without ..`)
    if (db.url || db.host || db.user || db.password || db.database)
      problems.push(`${at}: engine sqlite takes only path (and container)`)
    return problems
  },
  defaultLabel: db => ((db.path ?? '').split('/').pop() ?? '').replace(/\.[^.]*$/, '') || undefined,
  dump: t => ({ label: `sqlite3 .backup of the ${describe(t)}`, cmd: sqliteDump(t, WORK_VAR) }),
  check: (t, file) => ({
    label: `PRAGMA integrity_check (${file})`,
    cmd: sqliteCheck(t ?? hostTarget('sqlite'), WORK_VAR)
  }),
  restore(t, _tools, r) {
    // staged in the work dir first: the live database is touched only once the whole stream was read
    const staged = `"$${WORK_VAR}/restore.sqlite3"`
    r.run(r.head.length ? r.head : [{ label: `read ${r.file}`, cmd: 'cat' }], { from: r.from, to: staged })
    r.run([{ label: `sqlite3 .restore into the ${describe(t)}`, cmd: sqliteRestore(t, WORK_VAR) }], {
      from: staged
    })
  },
  probe: (t, h) => [h.version('sqlite3'), h.server(sqliteSize(t, SCRATCH_VAR))],
  readProbe(_t, r, out) {
    if (r.missing.includes('sqlite3')) out.problem(`sqlite3 not found ${r.where}: install sqlite3`)
    if (r.server) out.size(Number(r.server))
    // the file itself is missing or unreadable: said as it is, even when a tool is missing too
    if (!r.server && r.error && r.missing.length) out.problem(`the ${r.what} ${r.where}: ${r.error}`)
  }
}
