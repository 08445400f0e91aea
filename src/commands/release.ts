import { sh, shJoin } from './quote.js'
import { script, type RemoteCommand } from './command.js'
import type { Layout } from './layout.js'

/** Prepares the layout and reports what preflight needs to know, as KEY=value lines. */
export function inspectHost(
  layout: Layout,
  sharedFiles: string[],
  needs: string[],
  opts: { create?: boolean } = {}
): RemoteCommand {
  // `doctor` creates nothing: it says what a deploy would find, and whether it could create the layout
  const layoutLines =
    opts.create === false
      ? [
          'd="$root"; while [ ! -e "$d" ]; do d=$(dirname "$d"); done',
          'if [ -d "$root/releases" ]; then [ -w "$root/releases" ] || echo "ERROR=$root/releases is not writable"',
          'else',
          '  if [ -w "$d" ]; then echo "NOLAYOUT=$root"; else echo "ERROR=cannot create $root ($d is not writable)"; fi',
          'fi'
        ]
      : [
          'mkdir -p "$root/releases" "$root/shared" "$root/.safe-deploy" || { echo "ERROR=cannot create $root"; exit 0; }',
          '[ -w "$root/releases" ] || echo "ERROR=$root/releases is not writable"'
        ]
  return {
    label: 'inspect host',
    script: script(
      `root=${sh(layout.root)}`,
      ...layoutLines,
      'printf "CURRENT=%s\\n" "$(readlink "$root/current" 2>/dev/null)"',
      // free disk where the layout is (or will be, for doctor: the nearest dir that exists)
      opts.create === false
        ? 'printf "FREE_KB=%s\\n" "$(df -Pk "$d" 2>/dev/null | awk \'NR==2 {print $4}\')"'
        : 'printf "FREE_KB=%s\\n" "$(df -Pk "$root" | awk \'NR==2 {print $4}\')"',
      ...sharedFiles.map(f => `[ -e "$root/shared/"${sh(f)} ] || printf 'MISSING=%s\\n' ${sh(f)}`),
      ...needs.map(t => `command -v ${sh(t)} >/dev/null 2>&1 || printf 'NOTOOL=%s\\n' ${sh(t)}`),
      'ls -1 "$root/releases" 2>/dev/null | sed "s/^/RELEASE=/"',
      'ls -1 "$root/.safe-deploy/complete" 2>/dev/null | sed "s/^/COMPLETE=/"',
      'true'
    )
  }
}

/** The command line that unpacks the tar stream arriving on stdin into a new release directory. */
export function unpackCommand(layout: Layout, id: string): string {
  const dir = layout.release(id)
  return `rm -f ${sh(completeMarker(layout, id))} && mkdir -p ${sh(dir)} && tar -xzf - --no-same-owner -C ${sh(dir)}`
}

/**
 * Script lines for an upload's command line, after its unpack (one round trip for the upload, the shared
 * links and, without a build, the completion marker). Each part runs in a subshell of its own (its `set -e`
 * and `exit` stay its own); the first that fails ends the command with its exit code, and nothing after it runs.
 */
export function afterUnpack(parts: RemoteCommand[]): string {
  for (const p of parts)
    if (p.env || p.user)
      throw new Error(`${p.label}: a command with env or user code cannot follow an upload`)
  return script(...parts.flatMap(p => ['(', p.script, ')', 'r=$?; [ "$r" = 0 ] || exit "$r"']))
}

/** The file that says a release was built completely (written after its build, in .safe-deploy/complete/). */
function completeMarker(layout: Layout, id: string): string {
  return `${layout.meta}/complete/${id}`
}

/** Marks a release complete: its upload, shared links and build all finished. */
export function markComplete(layout: Layout, id: string): RemoteCommand {
  return {
    label: 'mark the release complete',
    script: script(`mkdir -p ${sh(`${layout.meta}/complete`)}`, `: > ${sh(completeMarker(layout, id))}`)
  }
}

/** One cheap round trip: the host still answers over its connection (a fleet, before the first switch). */
export function stillThere(): RemoteCommand {
  return { label: 'check that the host still answers before any host switches', script: script('true') }
}

/** The dirs above a shared path inside the release: `a/b/c` → `a`, `a/b`. */
function parentsOf(path: string): string[] {
  const parts = path.split('/').filter(c => c && c !== '.')
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'))
}

/**
 * Links shared files and dirs into the release; a file or dir shipped in the release is replaced. First, for
 * every shared path, refuses (exit 3, nothing changed) when a dir above it inside the release is a symlink or
 * resolves outside the release: the `rm -rf` + `ln -s` would otherwise replace a file outside the release
 * (`config -> /etc` and `shared.files: [config/.env]`).
 */
export function linkShared(layout: Layout, id: string, files: string[], dirs: string[]): RemoteCommand {
  const lines = [`rel=${sh(layout.release(id))}`, `shared=${sh(layout.shared)}`]
  lines.push('relreal=$(cd "$rel" && pwd -P) || exit 3')
  for (const p of [...dirs, ...files]) {
    for (const parent of parentsOf(p)) {
      lines.push(
        `if [ -L "$rel/"${sh(parent)} ]; then printf 'refusing to link shared %s: %s in the release is a symlink (to %s); linking through it would change a file outside the release\\n' ${sh(p)} ${sh(parent)} "$(readlink "$rel/"${sh(parent)})" >&2; exit 3; fi`
      )
    }
    const parent = parentsOf(p).at(-1)
    if (parent) {
      lines.push(
        `if [ -d "$rel/"${sh(parent)} ]; then case "$(cd "$rel/"${sh(parent)} && pwd -P)/" in "$relreal"/*) ;; *) printf 'refusing to link shared %s: %s resolves outside the release\\n' ${sh(p)} ${sh(parent)} >&2; exit 3;; esac; fi`
      )
    }
  }
  lines.push('set -e')
  for (const d of dirs) {
    lines.push(`mkdir -p "$shared/"${sh(d)}`)
    lines.push(
      `rm -rf "$rel/"${sh(d)}; mkdir -p "$(dirname "$rel/"${sh(d)})"; ln -s "$shared/"${sh(d)} "$rel/"${sh(d)}`
    )
  }
  for (const f of files) {
    lines.push(
      `rm -rf "$rel/"${sh(f)}; mkdir -p "$(dirname "$rel/"${sh(f)})"; ln -s "$shared/"${sh(f)} "$rel/"${sh(f)}`
    )
  }
  return { label: 'link shared files', script: script(...lines) }
}

/** Runs a user command (build, restart, verify command) inside a release dir. */
export function inRelease(
  layout: Layout,
  id: string,
  label: string,
  command: string,
  env: Record<string, string>
): RemoteCommand {
  return {
    label,
    user: true,
    env,
    script: script(`cd ${sh(layout.release(id))} || exit 1`, command)
  }
}

/** Points `current` at a release atomically: a new symlink under a temp name, renamed over `current`. */
export function switchCurrent(layout: Layout, id: string): RemoteCommand {
  const tmp = `${layout.root}/.current.${id}.tmp`
  return {
    label: `switch current to ${id}`,
    script: script(
      'set -e',
      `[ -d ${sh(layout.release(id))} ] || { printf 'release %s does not exist\\n' ${sh(id)} >&2; exit 1; }`,
      `ln -sfn ${sh(`releases/${id}`)} ${sh(tmp)}`,
      `mv -fT ${sh(tmp)} ${sh(layout.current)}`,
      `readlink ${sh(layout.current)}`
    )
  }
}

/** The line a switch-then-command script prints once `current` points at the new release (switchThen). */
export const SWITCHED_MARKER = '#safe-deploy:switched'

/**
 * switchCurrent and then a user command inside the release (the restart or reload) in one script: one round
 * trip. Once `current` is switched the script prints SWITCHED_MARKER on stdout, before the command's own
 * output; a failure without that line is the switch's (current unchanged), one after it the command's.
 * `command` is an inRelease command of the same release; its env and streamed output are kept.
 */
export function switchThen(layout: Layout, id: string, command: RemoteCommand): RemoteCommand {
  const swap = switchCurrent(layout, id)
  // its lines under `set -e` (without the readlink at its end), then the command as it runs alone (no `set -e`)
  const lines = swap.script.split('\n').slice(0, -1)
  return {
    ...command,
    label: `${swap.label}, then ${command.label}`,
    parts: [swap.label, command.label],
    display: command.display ?? command.script.split('\n').slice(1).join('; '),
    script: script(...lines, 'set +e', `printf '%s\\n' ${sh(SWITCHED_MARKER)}`, command.script)
  }
}

/** Removes `current` (the first deploy failed and there is nothing to go back to). */
export function removeCurrent(layout: Layout): RemoteCommand {
  return { label: 'remove current', script: `rm -f ${sh(layout.current)}` }
}

/** Removes release dirs, refusing the one `current` points to. */
export function removeReleases(layout: Layout, ids: string[]): RemoteCommand {
  return {
    label: `remove ${ids.join(', ')}`,
    script: script(
      `cur=$(readlink ${sh(layout.current)} 2>/dev/null || true)`,
      ...ids.map(
        id =>
          `if [ "$cur" = ${sh(`releases/${id}`)} ]; then printf 'refusing to remove the current release %s\\n' ${sh(id)} >&2; else rm -rf ${sh(layout.release(id))} && rm -f ${sh(completeMarker(layout, id))}; fi`
      )
    )
  }
}

/**
 * Prunes release dirs without making the run wait for their removal: each is renamed into
 * `.safe-deploy/pruned/` (one rename, under the lock, in the finish script), its completion marker removed, and
 * one `rm -rf` of that dir is started in the background, which the command does not wait for (a removal a
 * crash cut short is finished by the next one). Never the release `current` points to. Prints PRUNED=<id> for
 * each dir moved away and PRUNE_FAILED=<id> for one that could not be; never exits early (it goes into one
 * script with the history line and the lock's release, see `combine`).
 */
export function pruneReleases(layout: Layout, ids: string[]): RemoteCommand {
  const away = `${layout.meta}/pruned`
  return {
    label: `prune ${ids.join(', ')}`,
    script: script(
      `cur=$(readlink ${sh(layout.current)} 2>/dev/null || true)`,
      `mkdir -p ${sh(away)}`,
      ...ids.map(
        id =>
          `if [ "$cur" = ${sh(`releases/${id}`)} ]; then printf 'PRUNE_FAILED=%s\n' ${sh(id)}; ` +
          `elif [ ! -e ${sh(layout.release(id))} ]; then rm -f ${sh(completeMarker(layout, id))}; printf 'PRUNED=%s\n' ${sh(id)}; ` +
          `elif mv -f ${sh(layout.release(id))} ${sh(`${away}/${id}`)}.$$; then rm -f ${sh(completeMarker(layout, id))}; printf 'PRUNED=%s\n' ${sh(id)}; ` +
          `else printf 'PRUNE_FAILED=%s\n' ${sh(id)}; fi`
      ),
      `(rm -rf ${sh(away)}/* </dev/null >/dev/null 2>&1 &)`
    )
  }
}

export function listReleases(layout: Layout): RemoteCommand {
  return {
    label: 'list releases',
    script: script(
      `printf 'CURRENT=%s\\n' "$(readlink ${sh(layout.current)} 2>/dev/null)"`,
      `ls -1 ${sh(layout.releases)} 2>/dev/null | sed 's/^/RELEASE=/'`,
      'true'
    )
  }
}

/** Appends one history line; a torn last line (no newline at its end) is ended first, so no entry is glued to it. */
export function appendHistory(layout: Layout, entry: object): RemoteCommand {
  const h = sh(layout.history)
  return {
    label: 'record history',
    script: script(
      `mkdir -p ${sh(layout.meta)}`,
      `if [ -s ${h} ] && [ -n "$(tail -c 1 ${h})" ]; then printf '\\n' >> ${h}; fi`,
      `printf '%s\\n' ${sh(JSON.stringify(entry))} >> ${h}`
    )
  }
}

export function readHistory(layout: Layout, lines = 1000): RemoteCommand {
  return { label: 'read history', script: `tail -n ${lines} ${sh(layout.history)} 2>/dev/null || true` }
}

/** readHistory as KEY=value lines (`HISTORY=<line>`), to go into one script with other KEY=value output. */
export function readHistoryLines(layout: Layout, lines = 1000): RemoteCommand {
  return {
    label: 'read history',
    script: `{ tail -n ${lines} ${sh(layout.history)} 2>/dev/null || true; } | sed 's/^/HISTORY=/'`
  }
}

export function appendHostLog(layout: Layout, text: string): RemoteCommand {
  return {
    label: 'append deploy log on host',
    script: script(`mkdir -p ${sh(layout.meta)}`, `printf '%s\\n' ${sh(text)} >> ${sh(layout.hostLog)}`)
  }
}

/** Disk usage of the deploy root, for `status`. */
export function diskStatus(layout: Layout): RemoteCommand {
  return {
    label: 'disk status',
    script: script(
      `printf 'FREE_KB=%s\\n' "$(df -Pk ${sh(layout.root)} 2>/dev/null | awk 'NR==2 {print $4}')"`,
      `printf 'USED_KB=%s\\n' "$(du -sk ${sh(layout.root)} 2>/dev/null | cut -f1)"`
    )
  }
}

/** Parses KEY=value lines printed by the inspection scripts. */
export function parseKeyValues(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const i = line.indexOf('=')
    if (i <= 0) continue
    const key = line.slice(0, i)
    if (!/^[A-Z_]+$/.test(key)) continue
    const list = out.get(key) ?? []
    list.push(line.slice(i + 1))
    out.set(key, list)
  }
  return out
}

export { shJoin }
