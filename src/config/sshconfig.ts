/**
 * OpenSSH client config (`~/.ssh/config`) host aliases, as `ssh` reads them: `Host` blocks with patterns
 * (`*` and `?` wildcards, `!` negation, case-insensitive), and for each keyword the first value obtained wins.
 * Only what safe-deploy uses is kept: HostName, User, Port, IdentityFile (every one, in order), HostKeyAlias
 * and ProxyJump. `Match` blocks and `Include` are not followed (a `Match` block never applies). Pure: the
 * caller reads the file.
 */
import { globMatch } from '../transport/hostkeys.js'

export interface SshConfigLine {
  /** Lower-case keyword. */
  keyword: string
  /** Arguments, quotes removed. */
  args: string[]
  /** 1-based line number. */
  line: number
}

export interface SshConfigBlock {
  /** `Host` patterns; undefined for the lines before the first Host (they apply to every host). */
  patterns?: string[]
  /** A `Match` block: never applies here. */
  match?: boolean
  lines: SshConfigLine[]
}

/** What ~/.ssh/config says for one host alias; a field is unset when no block gives it. */
export interface SshHostConfig {
  /** The `Host` patterns that matched, in order (for the log). */
  matched: string[]
  hostName?: string
  user?: string
  port?: number
  identityFiles: string[]
  hostKeyAlias?: string
  proxyJump?: string
  /** Keywords the file sets for this host that safe-deploy does not follow (Include, Match). */
  ignored: string[]
}

/** Splits a config line into words: whitespace (or one `=`) separates, double quotes group. */
function words(text: string): string[] {
  const out: string[] = []
  let current = ''
  let quoted = false
  let started = false
  for (const ch of text) {
    if (ch === '"') {
      quoted = !quoted
      started = true
    } else if (!quoted && /\s/.test(ch)) {
      if (started) out.push(current)
      current = ''
      started = false
    } else {
      current += ch
      started = true
    }
  }
  if (started) out.push(current)
  return out
}

/** Parses the text of an OpenSSH client config into its blocks. Never throws: a line it cannot read is skipped. */
export function parseSshConfig(text: string): SshConfigBlock[] {
  const blocks: SshConfigBlock[] = [{ lines: [] }]
  text.split(/\r?\n/).forEach((raw, index) => {
    const trimmed = raw.trim()
    if (trimmed === '' || trimmed.startsWith('#')) return
    // `Keyword value`, `Keyword=value` or `Keyword = value`
    const m = /^([A-Za-z][A-Za-z0-9]*)\s*(?:=\s*|\s+)(.*)$/.exec(trimmed)
    if (!m) return
    const keyword = (m[1] as string).toLowerCase()
    const args = words((m[2] as string).replace(/\s+#.*$/, ''))
    if (keyword === 'host') blocks.push({ patterns: args, lines: [] })
    else if (keyword === 'match') blocks.push({ match: true, lines: [] })
    else (blocks.at(-1) as SshConfigBlock).lines.push({ keyword, args, line: index + 1 })
  })
  return blocks
}

/** Whether a Host pattern list applies to `host`: one positive pattern matches and no negated one does. */
export function hostPatternsMatch(patterns: string[], host: string): boolean {
  let positive = false
  for (const pattern of patterns) {
    if (pattern.startsWith('!')) {
      if (globMatch(host, pattern.slice(1))) return false
    } else if (globMatch(host, pattern)) positive = true
  }
  return positive
}

/**
 * What the config says for `alias` (the host as a person types it after `ssh`): the blocks that match, in
 * file order, first value wins; IdentityFile collects every value. Values are as written (no `~` or `%`
 * expansion: see expandTokens).
 */
export function sshHostConfig(blocks: SshConfigBlock[], alias: string): SshHostConfig {
  const out: SshHostConfig = { matched: [], identityFiles: [], ignored: [] }
  for (const block of blocks) {
    if (block.match) {
      if (!out.ignored.includes('Match')) out.ignored.push('Match')
      continue
    }
    if (block.patterns) {
      if (!hostPatternsMatch(block.patterns, alias)) continue
      out.matched.push(block.patterns.join(' '))
    }
    for (const { keyword, args } of block.lines) {
      const value = args[0]
      if (value === undefined) continue
      switch (keyword) {
        case 'hostname':
          out.hostName ??= value
          break
        case 'user':
          out.user ??= value
          break
        case 'port': {
          const port = Number(value)
          if (out.port === undefined && Number.isInteger(port) && port >= 1 && port <= 65535) out.port = port
          break
        }
        case 'identityfile':
          if (value.toLowerCase() !== 'none' && !out.identityFiles.includes(value))
            out.identityFiles.push(value)
          break
        case 'hostkeyalias':
          out.hostKeyAlias ??= value
          break
        case 'proxyjump':
          out.proxyJump ??= value
          break
        case 'include':
          if (!out.ignored.includes('Include')) out.ignored.push('Include')
          break
      }
    }
  }
  return out
}

export interface TokenValues {
  /** The home directory, for `~` and `%d`. */
  home: string
  /** %h: the host name (after HostName). */
  host: string
  /** %n: the alias as given. */
  alias: string
  /** %r: the remote user. */
  user: string
  /** %u: the local user. */
  localUser: string
  /** %p: the port. */
  port: number
}

/** Expands a leading `~/` and the `%h %n %r %u %p %d %%` tokens of IdentityFile (and HostName's `%h`). */
export function expandTokens(value: string, t: TokenValues): string {
  const tilde = value === '~' ? t.home : value.startsWith('~/') ? `${t.home}${value.slice(1)}` : value
  const table: Record<string, string> = {
    '%': '%',
    h: t.host,
    n: t.alias,
    r: t.user,
    u: t.localUser,
    p: String(t.port),
    d: t.home
  }
  return tilde.replace(/%(.)/g, (whole, c: string) => table[c] ?? whole)
}

/**
 * `ProxyJump` as one hop `[user@]host[:port]`; undefined for `none`, several hops (`a,b`) or a URI, which
 * safe-deploy does not follow.
 */
export function parseProxyJump(value: string): { user?: string; address: string; port?: number } | undefined {
  if (value.toLowerCase() === 'none' || value.includes(',') || value.includes('://')) return undefined
  const m = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:@]+)(?::(\d+))?$/.exec(value)
  if (!m) return undefined
  const address = (m[2] as string).replace(/^\[(.*)\]$/, '$1')
  const port = m[3] === undefined ? undefined : Number(m[3])
  if (port !== undefined && (port < 1 || port > 65535)) return undefined
  return { ...(m[1] ? { user: m[1] } : {}), address, ...(port ? { port } : {}) }
}
