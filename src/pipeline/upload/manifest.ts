/**
 * The manifest of a release, for the incremental upload (incremental.ts): every dir, regular file and symlink
 * of source.dir minus source.exclude (and minus the shared paths, which the deploy replaces by links), with
 * mode, sha256 and link target. Computed on the runner; its canonical text (`sumText`) is what the host's
 * listing script (`listingScript`) prints for a release that matches it, byte for byte, so the host checks a
 * release with `cmp` and nothing is parsed there.
 */
import { createHash } from 'node:crypto'
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'

export type EntryType = 'dir' | 'file' | 'link'

export interface ManifestEntry {
  /** Relative to the release root, `/`-separated; the root itself is `.`. */
  path: string
  type: EntryType
  /** Permission bits (incl. setuid, setgid, sticky); 0o777 for a symlink, as Linux reports it. */
  mode: number
  size: number
  sha256?: string
  target?: string
  /** Modification time in ms, whole seconds (what a tar header holds); the walk sets it, the host listing has none. */
  mtime?: number
}

export interface Manifest {
  entries: ManifestEntry[]
  /** Paths of source.dir that are not dirs, files or symlinks (fifos, sockets): not uploaded. */
  skipped: string[]
}

/**
 * source.exclude as GNU tar's `--exclude` reads it (unanchored, `*` and `?` also match `/`): a pattern
 * excludes a path when it matches the whole path (`./a/b` or `a/b`) or any part of it after a `/`; an
 * excluded dir is left out with everything below it.
 */
export function excludeMatcher(patterns: string[]): (path: string) => boolean {
  const res = patterns.map(p => new RegExp(`^${globToRegex(p.replace(/\/+$/, ''))}$`))
  return path => {
    const candidates = [`./${path}`, path]
    for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) candidates.push(path.slice(i + 1))
    return res.some(re => candidates.some(c => re.test(c)))
  }
}

function globToRegex(glob: string): string {
  let out = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string
    if (c === '*') out += '.*'
    else if (c === '?') out += '.'
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2)
      if (end < 0) out += '\\['
      else {
        const body = glob
          .slice(i + 1, end)
          .replace(/^!/, '^')
          .replace(/\\/g, '\\\\')
        out += `[${body}]`
        i = end
      }
    } else if (c === '\\' && i + 1 < glob.length) out += escapeRe(glob[++i] as string)
    else out += escapeRe(c)
  }
  return out
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}

function byPath(a: { path: string }, b: { path: string }): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0
}

/**
 * Walks `dir` (symlinks are not followed); `leaveOut` paths and everything below them are not listed. With
 * `hash: false` files get no sha256 (the tar upload needs none).
 */
export function buildManifest(
  dir: string,
  exclude: string[],
  leaveOut: string[] = [],
  opts: { hash?: boolean } = {}
): Manifest {
  const excluded = excludeMatcher(exclude)
  const left = new Set(leaveOut.map(p => p.replace(/^\.\/+/, '').replace(/\/+$/, '')))
  const entries: ManifestEntry[] = []
  const skipped: string[] = []
  const visit = (rel: string) => {
    const abs = rel === '.' ? dir : join(dir, rel)
    const st = lstatSync(abs)
    const mode = st.mode & 0o7777
    const mtime = Math.floor(st.mtimeMs / 1000) * 1000
    if (st.isSymbolicLink()) {
      entries.push({ path: rel, type: 'link', mode: 0o777, size: 0, target: readlinkSync(abs), mtime })
    } else if (st.isFile()) {
      const sha256 =
        opts.hash === false ? undefined : createHash('sha256').update(readFileSync(abs)).digest('hex')
      entries.push({ path: rel, type: 'file', mode, size: st.size, ...(sha256 ? { sha256 } : {}), mtime })
    } else if (st.isDirectory()) {
      entries.push({ path: rel, type: 'dir', mode, size: 0, mtime })
      for (const name of readdirSync(abs)) {
        const child = rel === '.' ? name : `${rel}/${name}`
        if (!excluded(child) && !left.has(child)) visit(child)
      }
    } else skipped.push(rel)
  }
  visit('.')
  entries.sort(byPath)
  return { entries, skipped }
}

/** What GNU `stat --printf %F` says for an entry (the host runs it with LC_ALL=C). */
function statType(e: ManifestEntry): string {
  if (e.type === 'dir') return 'directory'
  if (e.type === 'link') return 'symbolic link'
  return e.size === 0 ? 'regular empty file' : 'regular file'
}

/** The NUL-separated path lists the host's listing script reads: every entry, the files, the symlinks. */
export function pathLists(entries: ManifestEntry[]): { all: string; files: string; links: string } {
  const z = (es: ManifestEntry[]) => es.map(e => `${e.path}\0`).join('')
  return {
    all: z(entries),
    files: z(entries.filter(e => e.type === 'file')),
    links: z(entries.filter(e => e.type === 'link'))
  }
}

/**
 * The canonical text of a manifest: `stat` records (`type:mode:path`), an empty record, `sha256sum -z`
 * records of the files, an empty record, the symlink targets (`readlink -z`), all NUL-terminated.
 */
export function sumText(entries: ManifestEntry[]): string {
  const stat = entries.map(e => `${statType(e)}:${e.mode.toString(8)}:${e.path}\0`).join('')
  const sums = entries
    .filter(e => e.type === 'file')
    .map(e => `${e.sha256}  ${e.path}\0`)
    .join('')
  const links = entries
    .filter(e => e.type === 'link')
    .map(e => `${e.target}\0`)
    .join('')
  return `${stat}\0${sums}\0${links}`
}

/** Reads a canonical text back (what a host printed for a release); undefined when it is not one. */
export function parseSum(text: string): ManifestEntry[] | undefined {
  const records = text.split('\0')
  const firstGap = records.indexOf('')
  if (firstGap < 0) return undefined
  const entries: ManifestEntry[] = []
  for (const r of records.slice(0, firstGap)) {
    const m = /^(directory|symbolic link|regular empty file|regular file):([0-7]+):(.*)$/s.exec(r)
    if (!m) return undefined
    const kind = m[1] as string
    const type: EntryType = kind === 'directory' ? 'dir' : kind === 'symbolic link' ? 'link' : 'file'
    entries.push({
      path: m[3] as string,
      type,
      mode: parseInt(m[2] as string, 8),
      size: kind === 'regular file' ? -1 : 0
    })
  }
  const files = entries.filter(e => e.type === 'file')
  const links = entries.filter(e => e.type === 'link')
  const secondGap = firstGap + 1 + files.length
  const sums = records.slice(firstGap + 1, secondGap)
  const targets = records.slice(secondGap + 1)
  // after the last target comes the end of the text: one empty piece
  if (records[secondGap] !== '' || targets.length !== links.length + 1 || targets.pop() !== '')
    return undefined
  for (const [i, f] of files.entries()) {
    const s = sums[i]
    if (!s || s.slice(66) !== f.path || !/^[0-9a-f]{64} {2}$/.test(s.slice(0, 66))) return undefined
    f.sha256 = s.slice(0, 64)
  }
  for (const [i, l] of links.entries()) l.target = targets[i]
  return entries
}

/** The first path where two listings differ (for the log), or undefined when they are the same. */
export function firstDifference(a: ManifestEntry[], b: ManifestEntry[]): string | undefined {
  const key = (e: ManifestEntry) => `${e.type}:${e.mode}:${e.sha256 ?? ''}:${e.target ?? ''}`
  const bm = new Map(b.map(e => [e.path, key(e)]))
  for (const e of a) if (bm.get(e.path) !== key(e)) return e.path
  const am = new Set(a.map(e => e.path))
  return b.find(e => !am.has(e.path))?.path
}

/**
 * Splits the new release's entries: regular files the base release has with the same content and mode are
 * hard-linked on the host (`link`); every other file, and every dir and symlink, travels in the tar (`send`).
 */
export function planUpload(
  next: ManifestEntry[],
  base: ManifestEntry[] | undefined
): { link: ManifestEntry[]; send: ManifestEntry[] } {
  const have = new Map((base ?? []).filter(e => e.type === 'file').map(e => [e.path, e]))
  const link: ManifestEntry[] = []
  const send: ManifestEntry[] = []
  for (const e of next) {
    const b = e.type === 'file' ? have.get(e.path) : undefined
    if (b && b.sha256 === e.sha256 && b.mode === e.mode) link.push(e)
    else send.push(e)
  }
  return { link, send }
}
