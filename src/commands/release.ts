import { sh, shJoin } from './quote.js'
import { script, type RemoteCommand } from './command.js'
import type { Layout } from './layout.js'

/** Prepares the layout and reports what preflight needs to know, as KEY=value lines. */
export function inspectHost(layout: Layout, sharedFiles: string[], needs: string[]): RemoteCommand {
  return {
    label: 'inspect host',
    script: script(
      `root=${sh(layout.root)}`,
      'mkdir -p "$root/releases" "$root/shared" "$root/.safe-deploy" || { echo "ERROR=cannot create $root"; exit 0; }',
      '[ -w "$root/releases" ] || echo "ERROR=$root/releases is not writable"',
      'printf "CURRENT=%s\\n" "$(readlink "$root/current" 2>/dev/null)"',
      'printf "FREE_KB=%s\\n" "$(df -Pk "$root" | awk \'NR==2 {print $4}\')"',
      ...sharedFiles.map(f => `[ -e "$root/shared/"${sh(f)} ] || printf 'MISSING=%s\\n' ${sh(f)}`),
      ...needs.map(t => `command -v ${sh(t)} >/dev/null 2>&1 || printf 'NOTOOL=%s\\n' ${sh(t)}`),
      'ls -1 "$root/releases" 2>/dev/null | sed "s/^/RELEASE=/"',
      'true'
    )
  }
}

/** The command line that unpacks the tar stream arriving on stdin into a new release directory. */
export function unpackCommand(layout: Layout, id: string): string {
  const dir = layout.release(id)
  return `mkdir -p ${sh(dir)} && tar -xzf - --no-same-owner -C ${sh(dir)}`
}

/** Links shared files and dirs into the release; a file or dir shipped in the release is replaced. */
export function linkShared(layout: Layout, id: string, files: string[], dirs: string[]): RemoteCommand {
  const lines = [`set -e`, `rel=${sh(layout.release(id))}`, `shared=${sh(layout.shared)}`]
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
          `if [ "$cur" = ${sh(`releases/${id}`)} ]; then printf 'refusing to remove the current release %s\\n' ${sh(id)} >&2; else rm -rf ${sh(layout.release(id))}; fi`
      )
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

export function appendHistory(layout: Layout, entry: object): RemoteCommand {
  return {
    label: 'record history',
    script: script(
      `mkdir -p ${sh(layout.meta)}`,
      `printf '%s\\n' ${sh(JSON.stringify(entry))} >> ${sh(layout.history)}`
    )
  }
}

export function readHistory(layout: Layout, lines = 1000): RemoteCommand {
  return { label: 'read history', script: `tail -n ${lines} ${sh(layout.history)} 2>/dev/null || true` }
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
