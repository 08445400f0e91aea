/**
 * `upload.strategy: incremental` against a real sshd host: the same hostile source tree is deployed with the
 * tar strategy to one root and incrementally to another, step by step; after every step both new releases
 * hold the same entries (paths, types, modes, bytes, link targets). Unchanged files are hard links to the
 * previous release; a previous release edited on the host, or one without a manifest, gets a full upload.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { currentOf, hostileTree, project, releasesOf, snapshot, stopApp, type Project } from './support.js'

let host: SshHost
let tarRoot: string
let incRoot: string
let full: Project
let inc: Project
let roots: string[]

const incremental = (base: Record<string, unknown>) => ({ ...base, upload: { strategy: 'incremental' } })

beforeAll(async () => {
  host = await startSshd()
  tarRoot = host.root('full')
  incRoot = host.root('inc')
  roots = [tarRoot, incRoot]
  full = await project({ hosts: [host], root: tarRoot })
  inc = await project({ hosts: [host], root: incRoot, config: incremental })
})

afterAll(async () => {
  await stopApp(join(tarRoot, 'shared', 'app.pid'))
  await stopApp(join(incRoot, 'shared', 'app.pid'))
  await stopAll()
})

const srcOf = (p: Project) => join(p.dir, 'app')
const newest = (root: string) => releasesOf(root).sort().at(-1) as string
const releaseDir = (root: string, id: string) => join(root, 'releases', id)

/** Applies the same change to both source trees. */
function both(change: (src: string) => void) {
  change(srcOf(full))
  change(srcOf(inc))
}

/** Incompressible bytes, the same in both trees. */
const blobs = Array.from({ length: 40 }, () => randomBytes(16 * 1024))

/** `sent N files, X KiB; linked M` from the run's output. */
function sentLine(out: string): { files: number; kib: number; linked: number } {
  const m = /sent (\d+) files, ([\d.]+) KiB; linked (\d+)/.exec(out)
  if (!m) throw new Error(`no "sent ... linked" line in:\n${out}`)
  return { files: Number(m[1]), kib: Number(m[2]), linked: Number(m[3]) }
}

async function deployBoth(version: string): Promise<string> {
  full.app({ version })
  inc.app({ version })
  const a = await full.deploy()
  expect({ code: a.code, out: a.code ? a.stderr : '' }).toEqual({ code: 0, out: '' })
  const b = await inc.deploy()
  expect({ code: b.code, out: b.code ? b.stderr : '' }).toEqual({ code: 0, out: '' })
  expect(currentOf(incRoot)).toBe(`releases/${newest(incRoot)}`)
  expect(snapshot(releaseDir(incRoot, newest(incRoot)), roots)).toEqual(
    snapshot(releaseDir(tarRoot, newest(tarRoot)), roots)
  )
  return b.stderr + b.stdout
}

describe('incremental upload', () => {
  let first: { files: number; kib: number; linked: number }
  let firstRelease: string

  test('the first deploy is a full upload (nothing to link from) and equals the tar upload', async () => {
    both(src => hostileTree(src, blobs))
    const out = await deployBoth('1.0.0')
    expect(out).toContain('full upload: no previous complete release on this host')
    first = sentLine(out)
    firstRelease = newest(incRoot)
    expect(first.linked).toBe(0)
    const rel = releaseDir(incRoot, newest(incRoot))
    expect(lstatSync(join(rel, 'node_modules'), { throwIfNoEntry: false })).toBeUndefined()
    expect(readlinkSync(join(rel, 'dangling'))).toBe('nowhere/at/all')
    expect(readFileSync(join(rel, 'odd', 'new\nline'), 'utf8')).toBe('newline in the name\n')
    expect(lstatSync(join(rel, 'secret.key')).mode & 0o777).toBe(0o600)
    expect(readdirSync(join(incRoot, '.safe-deploy', 'manifests')).sort()).toEqual(
      ['all0', 'files0', 'links0', 'sum'].map(x => `${newest(incRoot)}.${x}`)
    )
  })

  test('one changed file: only it is sent, the rest is hard-linked, the previous release is untouched', async () => {
    const before = newest(incRoot)
    const prevDir = releaseDir(incRoot, before)
    const prevSnapshot = snapshot(prevDir, roots)
    both(src => writeFileSync(join(src, 'exec.sh'), '#!/bin/sh\necho changed\n'))
    const out = await deployBoth('1.0.0')
    const next = sentLine(out)
    expect(next.files).toBe(1)
    expect(next.linked).toBeGreaterThan(40)
    // the target: a 1-file redeploy sends < 2 % of the bytes of a full upload
    expect(next.kib / first.kib).toBeLessThan(0.02)
    const rel = releaseDir(incRoot, newest(incRoot))
    expect(lstatSync(join(rel, 'assets', 'blob-1.bin')).ino).toBe(
      lstatSync(join(prevDir, 'assets', 'blob-1.bin')).ino
    )
    expect(lstatSync(join(rel, 'exec.sh')).ino).not.toBe(lstatSync(join(prevDir, 'exec.sh')).ino)
    expect(snapshot(prevDir, roots)).toEqual(prevSnapshot)
  })

  test('swaps, deletions, mode changes and new names between releases', async () => {
    both(src => {
      rmSync(join(src, 'swap', 'file-then-dir'))
      mkdirSync(join(src, 'swap', 'file-then-dir'))
      writeFileSync(join(src, 'swap', 'file-then-dir', 'now-inside'), 'x\n')
      rmSync(join(src, 'swap', 'dir-then-file'), { recursive: true })
      writeFileSync(join(src, 'swap', 'dir-then-file'), 'now a file\n')
      rmSync(join(src, 'assets', 'blob-3.bin'))
      rmSync(join(src, 'empty-dir'), { recursive: true })
      chmodSync(join(src, 'group.conf'), 0o600)
      chmodSync(join(src, 'assets', 'blob-4.bin'), 0o755)
      rmSync(join(src, 'dangling'))
      symlinkSync('elsewhere', join(src, 'dangling'))
      writeFileSync(join(src, '-n'), 'another dash\n')
    })
    const out = await deployBoth('2.0.0')
    const r = sentLine(out)
    // server.js and VERSION (new version), the two swapped-in files, the mode changes, -n
    expect(r.files).toBe(7)
  })

  test('a previous release edited on the host: full upload, the log says where', async () => {
    const cur = newest(incRoot)
    writeFileSync(join(releaseDir(incRoot, cur), 'group.conf'), 'edited by hand\n')
    const out = await deployBoth('2.0.0')
    expect(out).toContain(`full upload: releases/${cur} does not match its manifest (first at "group.conf")`)
    expect(sentLine(out).linked).toBe(0)
  })

  test('current uploaded with tar (no manifest): linked from the newest release that has one', async () => {
    const withManifest = newest(incRoot)
    const toTar = join(inc.dir, 'safe-deploy.yml')
    const yml = readFileSync(toTar, 'utf8')
    writeFileSync(toTar, yml.replace(/upload:\n\s+strategy: incremental\n/, ''))
    inc.app({ version: '3.0.0' })
    expect((await inc.deploy()).code).toBe(0)
    writeFileSync(toTar, yml)
    const out = await deployBoth('3.0.0')
    expect(out).toContain(`linking from releases/${withManifest}`)
    expect(sentLine(out).linked).toBeGreaterThan(40)
    // keep_releases: 5 pruned the first release after that deploy; the next upload drops its manifest
    expect(releasesOf(incRoot)).not.toContain(firstRelease)
    await deployBoth('3.0.1')
    expect(
      readdirSync(join(incRoot, '.safe-deploy', 'manifests')).some(f => f.startsWith(firstRelease))
    ).toBe(false)
  })
})

describe('build reuse (build_reuse: paths, key_files)', () => {
  let root: string
  let p: Project
  // the "install": makes deps/ once; finds it in place when reused
  const install =
    'mkdir -p deps && { [ -f deps/installed ] || echo "$SAFE_DEPLOY_RELEASE" > deps/installed; }'

  beforeAll(async () => {
    root = host.root('reuse')
    p = await project({
      hosts: [host],
      root,
      config: base => ({
        ...base,
        build_reuse: { paths: ['deps', 'nested/vendor'], key_files: ['lock.txt'] },
        stages: { ...(base.stages as object), build: `${install} && echo built > BUILD_OK` }
      })
    })
  })

  afterAll(async () => {
    await stopApp(join(root, 'shared', 'app.pid'))
  })

  const installedBy = (id: string) =>
    readFileSync(join(root, 'releases', id, 'deps', 'installed'), 'utf8').trim()

  test('same lockfile: the second deploy finds the first build in place; a changed one builds afresh', async () => {
    p.app({ version: '1.0.0' })
    writeFileSync(join(p.dir, 'app', 'lock.txt'), 'left-pad@1.0.0\n')
    const a = await p.deploy()
    expect(a.code).toBe(0)
    expect(a.stderr).toContain(
      'build reuse: nothing linked: no previous release was built with these lock.txt'
    )
    const first = newest(root)
    expect(installedBy(first)).toBe(first)

    p.app({ version: '1.0.1' })
    const b = await p.deploy()
    expect(b.code).toBe(0)
    const second = newest(root)
    expect(second).not.toBe(first)
    expect(b.stderr).toContain(
      `build reuse: linked deps from releases/${first} (lock.txt unchanged); not in releases/${first}: nested/vendor`
    )
    // the marker of the first build is there: the install found its dir in place
    expect(installedBy(second)).toBe(first)
    expect(lstatSync(join(root, 'releases', second, 'deps', 'installed')).ino).toBe(
      lstatSync(join(root, 'releases', first, 'deps', 'installed')).ino
    )

    writeFileSync(join(p.dir, 'app', 'lock.txt'), 'left-pad@1.0.1\n')
    p.app({ version: '1.0.2' })
    const c = await p.deploy()
    expect(c.code).toBe(0)
    const third = newest(root)
    expect(c.stderr).toContain(
      'build reuse: nothing linked: no previous release was built with these lock.txt'
    )
    expect(installedBy(third)).toBe(third)
    expect(installedBy(second)).toBe(first)
  })
})
