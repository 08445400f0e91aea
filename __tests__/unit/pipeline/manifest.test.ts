import { describe, expect, test } from '@jest/globals'
import { createHash } from 'node:crypto'
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  buildManifest,
  excludeMatcher,
  firstDifference,
  parseSum,
  pathLists,
  planUpload,
  sumText,
  type ManifestEntry
} from '../../../src/pipeline/upload/manifest.js'
import { posixOnly } from '../helpers/platform.js'

const SHA_A = 'a'.repeat(64)
const SHA_B = 'b'.repeat(64)

const entries: ManifestEntry[] = [
  { path: '.', type: 'dir', mode: 0o755, size: 0 },
  { path: '-rf', type: 'file', mode: 0o600, size: 3, sha256: SHA_A },
  { path: 'empty', type: 'file', mode: 0o644, size: 0, sha256: SHA_B },
  { path: 'link', type: 'link', mode: 0o777, size: 0, target: '/etc/hostname' },
  { path: 'new\nline: a', type: 'file', mode: 0o4755, size: 1, sha256: SHA_B }
]

describe('source.exclude, read like GNU tar --exclude', () => {
  const ex = excludeMatcher(['.git', 'node_modules', '*.log', 'tmp/cache', 'a?c', 'dist/'])
  test.each([
    ['.git', true],
    ['.git/HEAD', false], // the walk never gets there: .git itself is left out
    ['sub/node_modules', true],
    ['x.log', true],
    ['deep/dir/x.log', true],
    ['tmp/cache', true],
    ['app/tmp/cache', true],
    ['abc', true],
    ['abbc', false],
    ['dist', true],
    ['node_modules_old', false],
    ['gitx', false],
    ['src/app.js', false]
  ])('%j excluded: %s', (path, excluded) => {
    expect(ex(path)).toBe(excluded)
  })
})

describe('canonical text', () => {
  test('is what the host prints: stat records, the sums, the link targets', () => {
    expect(sumText(entries)).toBe(
      'directory:755:.\0regular file:600:-rf\0regular empty file:644:empty\0symbolic link:777:link\0' +
        'regular file:4755:new\nline: a\0\0' +
        `${SHA_A}  -rf\0${SHA_B}  empty\0${SHA_B}  new\nline: a\0\0/etc/hostname\0`
    )
  })

  test('reads back to the same entries (size aside)', () => {
    const back = parseSum(sumText(entries))
    expect(back?.map(({ size: _, ...e }) => e)).toEqual(entries.map(({ size: _, ...e }) => e))
    expect(firstDifference(entries, back ?? [])).toBeUndefined()
  })

  test('a text that is not one is refused', () => {
    expect(parseSum('')).toBeUndefined()
    expect(parseSum('garbage\0\0\0')).toBeUndefined()
    // a missing sum (the file vanished on the host)
    expect(parseSum('regular file:644:a\0\0\0')).toBeUndefined()
    const text = sumText(entries)
    expect(parseSum(text.slice(0, -1))).toBeUndefined()
  })

  test('path lists are NUL-terminated, in order', () => {
    expect(pathLists(entries)).toEqual({
      all: '.\0-rf\0empty\0link\0new\nline: a\0',
      files: '-rf\0empty\0new\nline: a\0',
      links: 'link\0'
    })
  })
})

describe('what is linked and what is sent', () => {
  test('same sha256 and mode: linked; else sent; dirs and links always sent', () => {
    const base: ManifestEntry[] = [
      { path: '-rf', type: 'file', mode: 0o600, size: 3, sha256: SHA_A },
      { path: 'empty', type: 'file', mode: 0o600, size: 0, sha256: SHA_B },
      { path: 'new\nline: a', type: 'file', mode: 0o4755, size: 1, sha256: SHA_A },
      { path: 'link', type: 'file', mode: 0o777, size: 0, sha256: SHA_A }
    ]
    const { link, send } = planUpload(entries, base)
    expect(link.map(e => e.path)).toEqual(['-rf'])
    expect(send.map(e => e.path)).toEqual(['.', 'empty', 'link', 'new\nline: a'])
    expect(planUpload(entries, undefined).link).toEqual([])
  })

  test('firstDifference names the first path that differs, or one only the other has', () => {
    const edited = entries.map(e => (e.path === 'empty' ? { ...e, sha256: SHA_A } : e))
    expect(firstDifference(entries, edited)).toBe('empty')
    expect(firstDifference(entries.slice(0, 2), entries)).toBe('empty')
  })
})

describe('buildManifest', () => {
  // file modes and unprivileged symlinks: POSIX only
  posixOnly('walks without following symlinks, leaves out excluded and shared paths, sorts', () => {
    const dir = mkdtempSync(join(tmpdir(), 'manifest-'))
    mkdirSync(join(dir, 'node_modules'))
    writeFileSync(join(dir, 'node_modules', 'x'), 'x')
    mkdirSync(join(dir, 'logs'))
    writeFileSync(join(dir, 'logs', 'a'), 'a')
    writeFileSync(join(dir, '.env'), 'shipped')
    writeFileSync(join(dir, 'run'), 'echo\n')
    chmodSync(join(dir, 'run'), 0o750)
    symlinkSync('nowhere', join(dir, 'dangling'))
    symlinkSync('/etc', join(dir, 'etc'))
    const m = buildManifest(dir, ['node_modules'], ['logs', '.env'])
    expect(m.skipped).toEqual([])
    expect(m.entries.map(e => [e.path, e.type, e.mode.toString(8)])).toEqual([
      ['.', 'dir', expect.any(String)],
      ['dangling', 'link', '777'],
      ['etc', 'link', '777'],
      ['run', 'file', '750']
    ])
    expect(m.entries.find(e => e.path === 'run')).toMatchObject({
      size: 5,
      sha256: createHash('sha256').update('echo\n').digest('hex')
    })
    expect(m.entries.find(e => e.path === 'etc')?.target).toBe('/etc')
  })
})
