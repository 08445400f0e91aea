/**
 * What a host looks like to a deploy, as findings: the checks preflight stops on (an `error`) or warns about,
 * and `doctor` lists with their fixes. One list, so that `doctor` says exactly what the next deploy would say.
 */
import type { HostSession } from '../host/context.js'

export interface Finding {
  host: string
  /** Short name of the check: layout, shared files, tools, disk, ssh, sudo, backup tools, lock, history. */
  check: string
  level: 'ok' | 'info' | 'warning' | 'error'
  message: string
  /** What a person does about it. */
  fix?: string
}

/** A deploy stops below this much free disk under the deploy root, and warns below LOW_FREE_KB. */
export const MIN_FREE_KB = 50 * 1024
export const LOW_FREE_KB = 500 * 1024

export interface InspectFacts {
  kv: Map<string, string[]>
  /** The tools the command cannot run without (tar for a deploy). */
  needs: string[]
  /** verify.http checks run from the host: curl or wget is needed. */
  fromHost: boolean
  /** A deploy (shared files and disk space matter), not a backup or prune. */
  deploying: boolean
}

/** The findings of the `inspect host` script (src/commands/release.ts), in the order preflight checks them. */
export function inspectFindings(s: HostSession, f: InspectFacts): Finding[] {
  const host = s.host.name
  const out: Finding[] = []
  const error = f.kv.get('ERROR')?.[0]
  if (error)
    out.push({
      host,
      check: 'layout',
      level: 'error',
      message: `${error} on ${host}`,
      fix: `let the deploy user (${s.host.user || 'this user'}) create and write ${s.layout.root}`
    })
  else if (f.kv.get('NOLAYOUT'))
    out.push({
      host,
      check: 'layout',
      level: 'info',
      message: `${s.layout.root} does not exist yet; the first deploy creates it`
    })
  else out.push({ host, check: 'layout', level: 'ok', message: `${s.layout.root} is writable` })
  const missing = f.kv.get('MISSING') ?? []
  if (missing.length)
    out.push({
      host,
      check: 'shared files',
      level: 'error',
      message: `shared file${missing.length > 1 ? 's' : ''} ${missing.join(', ')} missing on ${host}: create ${missing.map(m => `${s.layout.shared}/${m}`).join(', ')} on the host first (shared files hold config and secrets, we never invent them)`,
      fix: `create ${missing.map(m => `${s.layout.shared}/${m}`).join(', ')} on ${host} (mode 0600 for secrets)`
    })
  const noTool = f.kv.get('NOTOOL') ?? []
  for (const tool of f.needs) {
    if (noTool.includes(tool))
      out.push({
        host,
        check: 'tools',
        level: 'error',
        message: `${tool} is not installed on ${host}`,
        fix: `install ${tool} on ${host}`
      })
  }
  if (f.fromHost && noTool.includes('curl') && noTool.includes('wget'))
    out.push({
      host,
      check: 'tools',
      level: 'error',
      message: `neither curl nor wget is installed on ${host}, needed for verify.http; install one or set verify.http.from: runner`,
      fix: `install curl on ${host}, or set verify.http.from: runner`
    })
  const free = Number(f.kv.get('FREE_KB')?.[0])
  if (Number.isFinite(free) && f.deploying) {
    const mb = Math.round(free / 1024)
    if (free < MIN_FREE_KB)
      out.push({
        host,
        check: 'disk',
        level: 'error',
        message: `only ${mb} MB free under ${s.layout.root} on ${host}; free some disk first`,
        fix: `free disk on ${host} (old releases: lower keep_releases; old backups: backups prune)`
      })
    else if (free < LOW_FREE_KB)
      out.push({
        host,
        check: 'disk',
        level: 'warning',
        message: `low disk: ${mb} MB free under ${s.layout.root}`,
        fix: `free disk on ${host}`
      })
    else out.push({ host, check: 'disk', level: 'ok', message: `${mb} MB free under ${s.layout.root}` })
  }
  return out
}
