import { sh } from '../commands/quote.js'
import type { ArtifactFormat } from './engine.js'

/**
 * Files and directories under the deploy root (`shared/.env`, `shared/uploads`), as a tar archive with
 * paths relative to the root (`./shared/.env`). Paths that do not exist are skipped with a warning.
 */
export function filesDump(root: string, paths: string[]): string {
  return [
    `cd ${sh(root)} || exit 1`,
    'set --',
    `for p in ${paths.map(sh).join(' ')}; do`,
    '  if [ -e "$p" ] || [ -L "$p" ]; then set -- "$@" "./$p"; else echo "skipped $p: it does not exist" >&2; fi',
    'done',
    '[ $# -gt 0 ] || set -- -T /dev/null',
    'tar -cf - "$@"',
    'r=$?',
    // GNU tar exits 1 when a file changed while it was read: the archive is still whole.
    '[ $r -eq 1 ] && { echo "tar: some files changed while they were archived; kept what was read" >&2; r=0; }',
    'exit $r'
  ].join('\n')
}

export function filesCheck(): string {
  return 'tar -tf - >/dev/null'
}

/** Unpacks the archive on stdin into `<work>/files` (a shell word naming a dir on the root's filesystem). */
export function filesExtract(work: string): string {
  return `mkdir -p ${work}/files && tar -xf - -C ${work}/files`
}

/**
 * Puts each path unpacked by filesExtract in place, whole: a directory ends up exactly as it was in the
 * backup (files added since are gone). The previous version is kept as `<path>.safe-deploy-old` until
 * every path is in place. Paths that are not in the backup are left alone.
 */
export function filesSwap(root: string, paths: string[], work: string): string {
  const list = paths.map(sh).join(' ')
  return [
    `root=${sh(root)}`,
    `x=${work}/files`,
    `for p in ${list}; do`,
    '  [ -e "$x/$p" ] || [ -L "$x/$p" ] || { echo "$p is not in the backup; left as it is" >&2; continue; }',
    '  if [ -e "$root/$p" ] || [ -L "$root/$p" ]; then',
    '    rm -rf "$root/$p.safe-deploy-old" && mv "$root/$p" "$root/$p.safe-deploy-old" || exit 1',
    '  fi',
    '  mkdir -p "$(dirname "$root/$p")" && mv "$x/$p" "$root/$p" || exit 1',
    'done',
    `for p in ${list}; do rm -rf "$root/$p.safe-deploy-old"; done`
  ].join('\n')
}

/** The files archive (`backup.files`): not a database, but a file of the backup like the dumps. */
export const files: ArtifactFormat = {
  ext: 'files.tar',
  compressible: true,
  atomicRestore: false,
  check: (_t, file) => ({ label: `tar -t (${file})`, cmd: filesCheck() })
}
