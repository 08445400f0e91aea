/**
 * No Docker engine runs on the test machines, so `container:` support is tested through the exact
 * commands safe-deploy generates: a fake `docker` first on the host's PATH records its working dir and
 * argv, insists on the `compose exec -T [-e NAME]... SERVICE CMD...` form (an `-e NAME=value` would put a
 * value on a command line: refused), and runs CMD on the host, where the real database tools are.
 */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { join } from 'node:path'

export interface FakeDocker {
  /** Directory to put first on PATH. */
  bin: string
  /** The working dir and the argv (joined by spaces) of each call. */
  calls(): { cwd: string; argv: string }[]
}

export function fakeDocker(dir: string): FakeDocker {
  const bin = join(dir, 'fake-docker-bin')
  const log = join(dir, 'fake-docker.log')
  mkdirSync(bin, { recursive: true })
  writeFileSync(
    join(bin, 'docker'),
    `#!/bin/sh
printf '%s\\t%s\\n' "$PWD" "$(printf '%s' "$*" | tr '\\n' '\\036')" >> '${log}'
[ "$1" = compose ] && [ "$2" = exec ] || { echo "fake docker: only 'docker compose exec' is supported: $*" >&2; exit 2; }
shift 2
while [ $# -gt 0 ]; do
  case "$1" in
    -T) shift ;;
    -e) case "$2" in *=*) echo "fake docker: -e $2 would put a value on the command line" >&2; exit 2 ;; esac
        [ -n "$(printenv "$2")" ] || { echo "fake docker: -e $2 but $2 is not set" >&2; exit 2; }
        shift 2 ;;
    -*) echo "fake docker: unexpected option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "fake docker: expected SERVICE COMMAND..." >&2; exit 2; }
shift
exec "$@"
`
  )
  chmodSync(join(bin, 'docker'), 0o755)
  return {
    bin,
    calls: () =>
      existsSync(log)
        ? readFileSync(log, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map(l => ({
              cwd: l.slice(0, l.indexOf('\t')),
              argv: l
                .slice(l.indexOf('\t') + 1)
                .split('\x1e')
                .join('\n')
            }))
        : []
  }
}

/** A directory with links to everything in /usr/bin except `without` (Debian 12: /bin is /usr/bin). */
export function pathWithout(dir: string, without: string[]): string {
  const out = join(dir, `path-without-${without.join('-')}`)
  if (existsSync(out)) return out
  mkdirSync(out, { recursive: true })
  for (const f of readdirSync('/usr/bin'))
    if (!without.includes(f)) symlinkSync(join('/usr/bin', f), join(out, f))
  return out
}
