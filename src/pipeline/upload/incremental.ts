/**
 * The incremental upload (`upload.strategy: incremental`). On the runner: the manifest of source.dir
 * (manifest.ts). Per host, two round trips:
 *  1. probe: pick the base release (`current`, else the newest complete release) that has a stored manifest,
 *     check it on disk against that manifest (`cmp` of the canonical listing) and send the manifest back;
 *  2. upload: one tar.gz (packed in-process, pack.ts, with the modes the manifest says) holds the new manifest's path lists, the
 *     list of files to hard-link from the base (same sha256 and mode) and everything else: changed files,
 *     every dir and symlink. The host extracts it into a staging dir, hard-links the unchanged files from the
 *     base, adds the staged tree, and checks the release: the sha256 of its listing must be the one of the
 *     manifest's canonical text (given in the command; the text itself is not sent). It stores the listing
 *     beside the completion markers (`.safe-deploy/manifests/<release>.*`) and drops the manifests of
 *     releases removed since.
 * No file is ever written through a link: the seeded links are new names for the base's inodes, every
 * changed file is a new inode from the tar. Paths the base lacks, changed, or a base that does not match its
 * manifest: those files travel in the tar (a full upload when nothing can be linked).
 */
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { sh } from '../../commands/quote.js'
import { script, type RemoteCommand } from '../../commands/command.js'
import { afterUnpack, parseKeyValues } from '../../commands/release.js'
import type { Layout } from '../../commands/layout.js'
import { runOn, runRaw, type HostSession, type RunContext } from '../../host/context.js'
import { StageError, errorMessage } from '../../core/errors.js'
import { previousReleases } from '../reuse.js'
import type { UploadStrategy } from './index.js'
import { readSource, tarName, writeTarGz } from './pack.js'
import { firstDifference, parseSum, pathLists, planUpload, sumText, type ManifestEntry } from './manifest.js'

/** Where a release's manifest lives on the host: `<dir>/<release>.{all0,files0,links0,sum}`. */
export function manifestDir(layout: Layout): string {
  return `${layout.meta}/manifests`
}

/** Where a release's quick listing (QUICK) lives on the host: `<dir>/<release>`, beside the manifests. */
export function quickDir(layout: Layout): string {
  return `${layout.meta}/quick`
}

/**
 * A shell function printing the canonical listing (manifest.ts `sumText`) of the current dir for the path
 * lists `$1.all0`, `$1.files0`, `$1.links0`. Missing paths print nothing, so the output differs.
 */
const LISTING = listingFunction('listing', 'xargs -0 -r sha256sum -z -- < "$1.files0"')

/** A shell function `name` printing a listing of the three path lists; `files` lists the regular files. */
function listingFunction(name: string, files: string): string[] {
  return [
    `${name}() {`,
    "  xargs -0 -r stat --printf '%F:%a:%n\\0' -- < \"$1.all0\" && printf '\\0' &&",
    `  ${files} && printf '\\0' &&`,
    '  xargs -0 -r readlink -z -- < "$1.links0"',
    '}'
  ]
}

/**
 * The quick listing: LISTING with each file's size and mtime (GNU `stat --printf '%s:%y'`, nanoseconds)
 * instead of its sha256. Written beside a release's manifest when it is assembled (`.safe-deploy/quick/<id>`);
 * while the base's quick listing is still that, its files are the ones hashed then (an edit changes the mtime),
 * and the base check needs no hashing. The hosts are Linux with GNU coreutils (BSD `stat -f` is not supported).
 */
const QUICK = listingFunction('quick', `xargs -0 -r stat --printf '%s:%y:%n\\0' -- < "$1.files0"`)

/** The KEY=value lines of the base check (probeBase): `BASE_STATE`, `BASE`, `BASE_DISK`, `BASE_SUM`. */
const KEYS = { state: 'BASE_STATE', base: 'BASE', disk: 'BASE_DISK', sum: 'BASE_SUM' } as const

/**
 * Picks the base among `candidates` (in order) and checks it against its manifest. Without `candidates`, the
 * host picks them as previousReleases does (src/pipeline/reuse.ts): `current` if complete, then the complete
 * releases newest first; so the check can go into preflight's inspection, before the runner knows them. Its
 * keys (KEYS) differ from every other script's, so that it can share a script with them.
 */
export function probeBase(layout: Layout, candidates?: string[]): RemoteCommand {
  const man = manifestDir(layout)
  const complete = `${layout.meta}/complete`
  const pick = candidates
    ? [`cands=${sh(candidates.join(' '))}`]
    : [
        `cur=$(readlink ${sh(layout.current)} 2>/dev/null); cur=\${cur#releases/}; cands=`,
        `if [ -n "$cur" ] && [ -e ${sh(complete)}/"$cur" ]; then cands=$cur; fi`,
        `cands="$cands $(ls -1 ${sh(complete)} 2>/dev/null | sort -r | tr '\\n' ' ')"`
      ]
  return {
    label: 'find the release to link from',
    // in a subshell: its `exit` and `cd` stay its own when it follows the inspection
    script: script(
      '(',
      'LC_ALL=C; export LC_ALL',
      ...LISTING,
      ...QUICK,
      `man=${sh(man)}`,
      `qd=${sh(quickDir(layout))}`,
      ...pick,
      'base=',
      // release ids are [0-9TZa-z-] only (src/release/id.ts): the list splits on spaces
      'for r in $cands; do',
      '  if [ -f "$man/$r.sum" ] && [ -f "$man/$r.all0" ] && [ -f "$man/$r.files0" ] && [ -f "$man/$r.links0" ]; then base=$r; break; fi',
      'done',
      `[ -n "$base" ] || { echo ${KEYS.state}=none; exit 0; }`,
      `printf "${KEYS.base}=%s\\n" "$base"`,
      `cd ${sh(layout.releases)}/"$base" || { echo ${KEYS.state}=gone; exit 0; }`,
      // sizes and mtimes as they were when it was assembled: its files are the ones hashed then
      `if [ -f "$qd/$base" ] && quick "$man/$base" 2>/dev/null | cmp -s - "$qd/$base"; then echo ${KEYS.state}=ok; else`,
      'disk=$(mktemp) || exit 1',
      'listing "$man/$base" > "$disk" 2>/dev/null',
      `if cmp -s "$disk" "$man/$base.sum"; then echo ${KEYS.state}=ok; else echo ${KEYS.state}=mismatch; gzip -c < "$disk" | base64 | sed "s/^/${KEYS.disk}=/"; fi`,
      'rm -f "$disk"',
      'fi',
      `gzip -c < "$man/$base.sum" | base64 | sed "s/^/${KEYS.sum}=/"`,
      ')'
    )
  }
}

/** The command line that assembles the release from the tar.gz on stdin (see the file comment). */
export function assembleCommand(
  layout: Layout,
  id: string,
  base: string | undefined,
  sumSha: string
): string {
  const stage = `${layout.meta}/incoming/${id}`
  const man = manifestDir(layout)
  return script(
    'set -e',
    'LC_ALL=C; export LC_ALL',
    ...LISTING,
    ...QUICK,
    // what the listing needs (GNU coreutils 8.30 or later for sha256sum -z and readlink -z)
    `{ sha256sum -z /dev/null && stat --printf '%F' / && cp --help | grep -q -- --parents; } >/dev/null 2>&1 || { echo 'the incremental upload needs GNU coreutils 8.30 or later on the host (stat --printf, sha256sum -z, cp -al --parents); use upload.strategy: tar' >&2; exit 1; }`,
    `rel=${sh(layout.release(id))}`,
    `stage=${sh(stage)}`,
    `man=${sh(man)}`,
    `qd=${sh(quickDir(layout))}`,
    `rm -f ${sh(`${layout.meta}/complete/${id}`)}`,
    'rm -rf "$stage"',
    'trap \'rm -rf "$stage"\' EXIT',
    'mkdir -p "$stage" "$rel" "$man"',
    'tar -xzpf - --no-same-owner -C "$stage"',
    base
      ? `(cd ${sh(layout.release(base))} && xargs -0 -r cp -al --parents -t "$rel" -- < "$stage/meta/link0")`
      : undefined,
    'cp -al "$stage/tree/." "$rel/"',
    'cd "$rel"',
    'listing "$stage/meta/m" > "$stage/meta/m.sum" 2>/dev/null || true',
    'got=$(sha256sum < "$stage/meta/m.sum")',
    // a base whose files changed with their sizes and mtimes kept: the next check hashes it again
    `[ "\${got%% *}" = ${sh(sumSha)} ] || { ${base ? `rm -f "$qd/"${sh(base)}; ` : ''}printf '%s does not match its manifest after the upload\\n' ${sh(`releases/${id}`)} >&2; exit 1; }`,
    `for x in all0 files0 links0 sum; do mv -f "$stage/meta/m.$x" "$man/"${sh(id)}".$x"; done`,
    // the quick listing of the release just checked, for the next deploy's check of its base
    `mkdir -p "$qd" && quick "$man/"${sh(id)} > "$qd/"${sh(id)}.tmp 2>/dev/null && mv -f "$qd/"${sh(id)}.tmp "$qd/"${sh(id)} || rm -f "$qd/"${sh(id)}.tmp`,
    // manifests of releases pruned or removed since
    `for f in "$man"/*.sum; do [ -e "$f" ] || continue; r=\${f##*/}; r=\${r%.sum}; [ -d ${sh(layout.releases)}/"$r" ] || rm -f "$man/$r".*; done`,
    `for f in "$qd"/*; do [ -e "$f" ] || continue; [ -d ${sh(layout.releases)}/"\${f##*/}" ] || rm -f "$f"; done`
  )
}

function decode(lines: string[] | undefined): string | undefined {
  if (!lines?.length) return undefined
  try {
    return gunzipSync(Buffer.from(lines.join(''), 'base64')).toString('utf8')
  } catch {
    return undefined
  }
}

/** Which base release the host has, checked; undefined (with the reason logged) for a full upload. */
async function findBase(
  ctx: RunContext,
  s: HostSession
): Promise<{ id: string; entries: ManifestEntry[] } | undefined> {
  const candidates = previousReleases(s)
  const full = (why: string) => {
    ctx.log.info(`full upload: ${why}`, s.host.name)
    return undefined
  }
  if (!candidates.length) return full('no previous complete release on this host')
  // preflight checked it in its inspection of this host (s.baseProbe), else it is one command of its own
  const out =
    s.baseProbe ?? (await runOn(ctx, s, probeBase(s.layout, candidates), { stage: 'deploy' })).stdout
  const kv = parseKeyValues(out)
  const state = kv.get(KEYS.state)?.[0]
  const base = kv.get(KEYS.base)?.[0]
  if (state === 'none' || !base) return full('no previous release has a manifest (it was uploaded with tar)')
  if (state === 'gone') return full(`releases/${base} is gone`)
  const stored = parseSum(decode(kv.get(KEYS.sum)) ?? '')
  if (!stored) return full(`the manifest of releases/${base} cannot be read`)
  if (state !== 'ok') {
    const disk = parseSum(decode(kv.get(KEYS.disk)) ?? '')
    const where = disk ? firstDifference(stored, disk) : undefined
    return full(
      `releases/${base} does not match its manifest${where ? ` (first at ${JSON.stringify(where)})` : ''}: changed on the host since it was uploaded`
    )
  }
  if (base !== s.current) {
    ctx.log.info(
      `linking from releases/${base}${s.current ? ` (current releases/${s.current} has no manifest)` : ''}`,
      s.host.name
    )
  }
  return { id: base, entries: stored }
}

/** Packs the meta files and the entries to send into one tar.gz on the runner. */
async function pack(
  src: string,
  entries: ManifestEntry[],
  link: ManifestEntry[],
  send: ManifestEntry[]
): Promise<{ file: string; cleanup: () => void }> {
  const tmp = mkdtempSync(join(tmpdir(), 'safe-deploy-inc-'))
  const cleanup = () => rmSync(tmp, { recursive: true, force: true })
  try {
    const lists = pathLists(entries)
    const file = join(tmp, 'upload.tar.gz')
    await writeTarGz(file, [
      { name: 'meta/m.all0', body: lists.all },
      { name: 'meta/m.files0', body: lists.files },
      { name: 'meta/m.links0', body: lists.links },
      { name: 'meta/link0', body: link.map(e => `${e.path}\0`).join('') },
      ...send.map(entry => ({ name: tarName('tree/', entry), entry, src }))
    ])
    return { file, cleanup }
  } catch (e) {
    cleanup()
    throw e
  }
}

export function incrementalUpload(): UploadStrategy {
  let entries: ManifestEntry[] | undefined
  let sumSha = ''
  let src = ''
  const cleanups: (() => void)[] = []
  return {
    name: 'incremental',
    async prepare(ctx, dir) {
      // source.dir, or the staging copy stages.build_local built in
      src = dir
      const { files, dirs } = ctx.config.shared
      if (ctx.dryRun) {
        ctx.dryRun.runner(
          'compute the manifest of source.dir (sha256 and mode of every file; shared paths left out)'
        )
        return
      }
      let m
      try {
        m = readSource(src, ctx.config.source, {
          leaveOut: [...files, ...dirs],
          gitDir: ctx.loaded.sourceDir
        })
      } catch (e) {
        throw new StageError('deploy', `cannot read source.dir ${src}: ${errorMessage(e)}`, 'runner')
      }
      entries = m.entries
      sumSha = createHash('sha256').update(sumText(entries)).digest('hex')
      if (m.skipped.length)
        ctx.log.warn(
          `not uploaded (neither file, dir nor symlink): ${m.skipped.map(p => JSON.stringify(p)).join(', ')}`,
          'runner'
        )
      const bytes = entries.reduce((n, e) => n + e.size, 0)
      ctx.log.info(
        `manifest of ${src}: ${entries.filter(e => e.type === 'file').length} files, ${(bytes / 1024).toFixed(1)} KiB`,
        'runner'
      )
    },
    async send(ctx, s, release, then = []) {
      const parts = ['upload', ...then.map(t => t.label)]
      if (ctx.dryRun || !entries) {
        await runRaw(
          ctx,
          s,
          script(
            assembleCommand(s.layout, release, undefined, '<sha256 of the manifest>'),
            afterUnpack(then) || undefined
          ),
          'upload',
          {
            stage: 'deploy',
            parts,
            stdin: '(a tar.gz of the changed files and the manifest)'
          }
        )
        return
      }
      const base = await findBase(ctx, s)
      const { link, send } = planUpload(entries, base?.entries)
      const p = await pack(src, entries, link, send)
      cleanups.push(p.cleanup)
      const size = statSync(p.file).size
      await runRaw(
        ctx,
        s,
        script(assembleCommand(s.layout, release, base?.id, sumSha), afterUnpack(then) || undefined),
        'upload',
        {
          stage: 'deploy',
          parts,
          stdin: createReadStream(p.file)
        }
      )
      p.cleanup()
      const sent = send.filter(e => e.type === 'file').length
      ctx.log.info(
        `sent ${sent} files, ${(size / 1024).toFixed(1)} KiB; linked ${link.length}${base ? ` from releases/${base.id}` : ''}`,
        s.host.name
      )
    },
    finish() {
      for (const c of cleanups.splice(0)) c()
    }
  }
}
