/**
 * The in-process packer of the tar upload (src/pipeline/upload/pack.ts) against a real sshd host: a hostile
 * source tree deployed with `upload.strategy: tar` lands byte-, mode-, mtime- and link-identical to what GNU
 * `tar -czf` with the same `--exclude`s gives when extracted the way the host extracts (the reference is made
 * here with the real GNU tar); a file named in source.executable lands 0755 whatever its mode on the runner
 * (a Windows checkout has no executable bit), so `bin/restart` runs.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { copyTree } from '../../src/pipeline/buildlocal.js'
import {
  currentOf,
  hostileTree,
  project,
  q,
  releasesOf,
  snapshot,
  stopApp,
  writeWithMode,
  type Project
} from './support.js'

let host: SshHost
const pidFiles: string[] = []

const EXCLUDE = ['.git', 'node_modules', '*.log', 'sub/cache', '?.tmp']

beforeAll(async () => {
  host = await startSshd()
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  await stopAll()
})

const newest = (root: string) => releasesOf(root).at(-1) as string

/** What the release has that the upload did not bring: the build's output and the shared links. */
const ADDED = new Set(['BUILD_OK', '.env', 'data', 'logs'])
const uploaded = (lines: string[]) => lines.filter(l => !ADDED.has(l.split(/[ /]/)[0] as string))

describe('tar upload packed in-process', () => {
  test('a hostile tree lands as GNU tar would have put it (bytes, modes, mtimes, links, excludes)', async () => {
    const root = host.root('pack-hostile')
    const p: Project = await project({
      hosts: [host],
      root,
      config: base => ({ ...base, source: { dir: './app', exclude: EXCLUDE } })
    })
    pidFiles.push(join(root, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    const src = join(p.dir, 'app')
    hostileTree(
      src,
      Array.from({ length: 5 }, () => randomBytes(4096))
    )
    const w = (rel: string, body: string, mode: number) => writeWithMode(src, rel, body, mode)
    w('group-writable', 'g+w\n', 0o664)
    w('read-only', 'r\n', 0o400)
    w('setgid-dir/inside', 'in a 2775 dir\n', 0o644)
    chmodSync(join(src, 'setgid-dir'), 0o2775)
    w('app.log', 'excluded by *.log\n', 0o644)
    w('deep/app.log', 'excluded by *.log too\n', 0o644)
    w('sub/cache/x', 'excluded by sub/cache\n', 0o644)
    w('other/sub/cache/y', 'excluded too: GNU tar patterns are unanchored\n', 0o644)
    w('a.tmp', 'excluded by ?.tmp\n', 0o644)
    w('ab.tmp', 'kept: ? is one character\n', 0o644)
    w(`${'long-name-'.repeat(12)}/${'even-longer-'.repeat(12)}.txt`, 'a path past ustar limits\n', 0o644)
    w('tools/ünï/d\'q"/x y', 'deep odd names\n', 0o755)
    // a read-only dir with a file in it
    w('locked/file', 'inside a 0555 dir\n', 0o644)
    chmodSync(join(src, 'locked'), 0o555)

    const r = await p.deploy()
    expect({ code: r.code, err: r.code ? r.stderr : '' }).toEqual({ code: 0, err: '' })
    expect(currentOf(root)).toBe(`releases/${newest(root)}`)

    // the reference: GNU tar packs and extracts (as the host does: tar -xzf - --no-same-owner)
    const ref = tempDir('pack-ref-')
    const excludes = EXCLUDE.map(e => `--exclude=${q(e)}`).join(' ')
    host.run(
      `tar -czf ${q(`${ref}.tgz`)} ${excludes} -C ${q(src)} . && mkdir -p ${q(`${ref}/x`)} && tar -xzf ${q(`${ref}.tgz`)} --no-same-owner -C ${q(`${ref}/x`)}`
    )
    const want = uploaded(snapshot(join(ref, 'x'), [], { mtime: true }))
    const got = uploaded(snapshot(join(root, 'releases', newest(root)), [root], { mtime: true }))
    expect(got).toEqual(want)
    // what that comparison covers, spelled out
    expect(got).toEqual(
      expect.arrayContaining([
        'private-dir/ 700',
        'locked/ 555',
        'setgid-dir/ 2775',
        'dangling -> nowhere/at/all',
        'assets-link -> assets',
        'empty-dir/ 755'
      ])
    )
    for (const file of ['group-writable 664 ', 'read-only 400 ', 'odd/new\nline 644 ', 'ab.tmp 644 '])
      expect(got.some(l => l.startsWith(file))).toBe(true)
    expect(got.filter(l => /node_modules|\.git\/|\.log|cache|^a\.tmp/.test(l))).toEqual([])
  })

  test('a 0644 bin/restart named in source.executable lands 0755 and runs', async () => {
    const root = host.root('pack-exec')
    const p = await project({
      hosts: [host],
      root,
      config: base => ({
        ...base,
        source: { dir: './app', exclude: ['.git', 'node_modules'], executable: ['bin/*'] }
      })
    })
    pidFiles.push(join(root, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    // what a Windows checkout gives: no executable bit anywhere
    chmodSync(join(p.dir, 'app', 'bin', 'restart'), 0o644)
    writeFileSync(join(p.dir, 'app', 'notes.txt'), 'not matched: keeps its mode\n')
    chmodSync(join(p.dir, 'app', 'notes.txt'), 0o600)
    const r = await p.deploy()
    expect({ code: r.code, err: r.code ? r.stderr : '' }).toEqual({ code: 0, err: '' })
    const rel = join(root, 'releases', newest(root))
    expect(lstatSync(join(rel, 'bin', 'restart')).mode & 0o7777).toBe(0o755)
    expect(lstatSync(join(rel, 'notes.txt')).mode & 0o7777).toBe(0o600)
    // bin/restart ran: the app answers with the new version's pid file written
    expect(readFileSync(join(root, 'shared', 'app.pid'), 'utf8').trim()).toMatch(/^\d+$/)
  })

  test('the incremental upload packs what stages.build_local built (the staging copy, not source.dir)', async () => {
    const root = host.root('pack-inc-build')
    const p = await project({
      hosts: [host],
      root,
      config: base => ({
        ...base,
        upload: { strategy: 'incremental' },
        stages: { ...(base.stages as object), build_local: 'mkdir -p dist && echo compiled > dist/app.txt' }
      })
    })
    pidFiles.push(join(root, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    const r = await p.deploy()
    expect({ code: r.code, err: r.code ? r.stderr : '' }).toEqual({ code: 0, err: '' })
    const rel = join(root, 'releases', newest(root))
    expect(readFileSync(join(rel, 'dist', 'app.txt'), 'utf8')).toBe('compiled\n')
    expect(existsSync(join(p.dir, 'app', 'dist'))).toBe(false)
  })
})

describe("build_local's staging copy, in-process", () => {
  test('copyTree gives what tar -c | tar -x gave (bytes, modes, mtimes, links, excludes), and copies only the paths asked for', async () => {
    const src = tempDir('copytree-src-')
    hostileTree(
      src,
      Array.from({ length: 3 }, () => randomBytes(4096))
    )
    writeWithMode(src, 'ro/inside.txt', 'in a read-only dir\n', 0o644)
    chmodSync(join(src, 'ro'), 0o555)
    writeWithMode(src, 'node_modules/dep/index.js', 'module.exports = 1\n', 0o644)
    writeWithMode(src, 'debug.log', 'left out\n', 0o644)
    const ex = EXCLUDE.map(e => `--exclude=${q(e)}`).join(' ')
    const reference = tempDir('copytree-tar-')
    const tar = spawnSync('sh', ['-c', `tar -cf - ${ex} -C ${q(src)} . | tar -xf - -C ${q(reference)}`])
    expect(tar.status).toBe(0)
    const ours = tempDir('copytree-ours-')
    await copyTree(src, ours, EXCLUDE)
    expect(snapshot(ours, [], { mtime: true })).toEqual(snapshot(reference, [], { mtime: true }))
    expect(existsSync(join(ours, 'debug.log'))).toBe(false)
    expect(lstatSync(join(ours, 'ro')).mode & 0o777).toBe(0o555)

    // a cache's paths: only those (and the dirs on the way), into a dir that has other files
    const some = tempDir('copytree-paths-')
    writeFileSync(join(some, 'kept.txt'), 'kept\n')
    await copyTree(src, some, [], { paths: ['node_modules', 'with space/a file.txt'] })
    expect(readFileSync(join(some, 'node_modules', 'dep', 'index.js'), 'utf8')).toBe('module.exports = 1\n')
    expect(readFileSync(join(some, 'with space', 'a file.txt'), 'utf8')).toBe('spaces\n')
    expect(readFileSync(join(some, 'kept.txt'), 'utf8')).toBe('kept\n')
    expect(existsSync(join(some, 'exec.sh'))).toBe(false)
    chmodSync(join(src, 'ro'), 0o755)
  })
})
