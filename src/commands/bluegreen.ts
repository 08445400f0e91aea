/**
 * Commands for the blue-green switch (docs/blue-green.md): the per-host state file that says which port of
 * the pair is live, the upstream file the proxy reads, and the user's start/stop commands on a port.
 *
 * State file `<root>/.safe-deploy/active-port`: one line `<port> <release>`, written to a temp file in the
 * same directory and renamed over the old one, so a reader sees the old line or the new one, never half.
 */
import { sh } from './quote.js'
import { script, type RemoteCommand } from './command.js'
import type { Layout } from './layout.js'
import { inRelease, parseKeyValues } from './release.js'

/** The line that separates the key/value part of readBlueGreenState's output from the upstream file. */
export const UPSTREAM_MARKER = '--- safe-deploy upstream file ---'

export function activePortFile(layout: Layout): string {
  return `${layout.meta}/active-port`
}

/** `{port}` (and `{host}`) in a config string replaced; ports are integers, so nothing needs quoting here. */
export function withPort(template: string, port: number, host?: string): string {
  const out = template.replace(/\{port\}/g, String(port))
  return host === undefined ? out : out.replace(/\{host\}/g, () => host)
}

/** The upstream file's content for `port`: the template with `{port}` replaced, ending in a newline. */
export function renderUpstream(template: string, port: number): string {
  const text = withPort(template, port)
  return text.endsWith('\n') ? text : `${text}\n`
}

/**
 * Prints `STATE=<port> <release>` from the state file (when there is one), then `UPSTREAM=1` and, after
 * UPSTREAM_MARKER on a line of its own, the upstream file's bytes (when it exists).
 */
export function readBlueGreenState(layout: Layout, upstreamFile: string): RemoteCommand {
  return {
    label: 'read blue-green state',
    script: script(
      `state=${sh(activePortFile(layout))}`,
      `up=${sh(upstreamFile)}`,
      `if [ -f "$state" ]; then printf 'STATE=%s\\n' "$(head -n 1 "$state")"; fi`,
      `if [ -f "$up" ]; then printf 'UPSTREAM=1\\n%s\\n' ${sh(UPSTREAM_MARKER)}; cat "$up"; fi`,
      'true'
    )
  }
}

export interface BlueGreenState {
  /** The live port and the release on it, from the state file or, without one, the upstream file. */
  active?: { port: number; release?: string; from: 'state' | 'upstream' }
  /** The upstream file's bytes; undefined when it does not exist. */
  upstream?: string
  /** Why the state file was not used, when there is one. */
  warning?: string
}

/** Whether `text` names `port` as a port (`:8001;`, `:8001 `), not as part of a longer number. */
function namesPort(text: string, port: number): boolean {
  return new RegExp(`:${port}(?![0-9])`).test(text)
}

/**
 * Makes sense of readBlueGreenState's output. The state file wins when it names a port of the pair; else
 * the upstream file, when it names exactly one port of the pair (a first blue-green deploy of an app that
 * the proxy already sends to one of the ports: we must not start over it); else there is no active port.
 */
export function parseBlueGreenState(stdout: string, ports: readonly [number, number]): BlueGreenState {
  const at = stdout.indexOf(`\n${UPSTREAM_MARKER}\n`)
  const head = at < 0 ? stdout : stdout.slice(0, at + 1)
  const upstream = at < 0 ? undefined : stdout.slice(at + UPSTREAM_MARKER.length + 2)
  const out: BlueGreenState = { upstream }
  const line = parseKeyValues(head).get('STATE')?.[0]?.trim()
  if (line) {
    const [portText, release] = line.split(/\s+/)
    const port = Number(portText)
    if (ports.includes(port)) {
      out.active = { port, release: release || undefined, from: 'state' }
      return out
    }
    out.warning = `the state file names port ${JSON.stringify(portText)}, not one of ${ports.join(' and ')}; ignored`
  }
  if (upstream !== undefined) {
    const named = ports.filter(p => namesPort(upstream, p))
    if (named.length === 1) out.active = { port: named[0] as number, from: 'upstream' }
  }
  return out
}

/** Records the live port and release (temp file + rename). */
export function writeActivePort(layout: Layout, port: number, release: string): RemoteCommand {
  const file = activePortFile(layout)
  return {
    label: `record active port ${port}`,
    script: script(
      'set -e',
      `mkdir -p ${sh(layout.meta)}`,
      `tmp=${sh(`${file}.tmp`)}.$$`,
      `printf '%s %s\\n' ${sh(port)} ${sh(release)} > "$tmp"`,
      `mv -f "$tmp" ${sh(file)}`
    )
  }
}

/** Forgets the live port (a first deploy that was undone: nothing serves). */
export function clearActivePort(layout: Layout): RemoteCommand {
  return { label: 'clear active port', script: `rm -f ${sh(activePortFile(layout))}` }
}

/**
 * Replaces the upstream file atomically: a temp file in the same directory (so the rename is atomic, and
 * named so that an `include conf.d/*.conf` does not pick it up), with the old file's mode and owner when
 * there is one (cp -p), else 0644; then renamed over the file (`mv -T`: never into a directory of that
 * name). The directory must exist.
 */
export function writeUpstream(file: string, content: string): RemoteCommand {
  return {
    label: `write upstream file ${file}`,
    script: script(
      'set -e',
      `f=${sh(file)}`,
      'dir=$(dirname "$f")',
      `[ -d "$dir" ] || { printf 'the directory of upstream_file %s does not exist\\n' "$f" >&2; exit 1; }`,
      'tmp=$(mktemp "$dir/.safe-deploy-upstream.XXXXXX")',
      `trap 'rm -f "$tmp"' EXIT`,
      'if [ -f "$f" ]; then cp -p "$f" "$tmp"; else chmod 644 "$tmp"; fi',
      `printf '%s' ${sh(content)} > "$tmp"`,
      'mv -fT "$tmp" "$f"'
    )
  }
}

/** Runs the user's `start` or `stop` for `port` inside a release: `{port}` replaced, PORT exported. */
export function onPort(
  layout: Layout,
  release: string,
  label: 'start' | 'stop',
  command: string,
  port: number,
  env: Record<string, string>
): RemoteCommand {
  return inRelease(layout, release, `${label} port ${port}`, withPort(command, port), {
    ...env,
    PORT: String(port),
    SAFE_DEPLOY_PORT: String(port)
  })
}
