/**
 * The packer's mode rules (pack.ts settleModes: pure, any platform given as an argument) and, with the real
 * git, the Windows path reading the executable bit from the git index.
 */
import { describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { chmodSync, cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readSource, settleModes, tarName } from '../../../src/pipeline/upload/pack.js'
import type { ManifestEntry } from '../../../src/pipeline/upload/manifest.js'
import { posixOnly } from '../helpers/platform.js'

const entries: ManifestEntry[] = [
  { path: '.', type: 'dir', mode: 0o700, size: 0 },
  { path: 'bin', type: 'dir', mode: 0o666, size: 0 },
  { path: 'bin/restart', type: 'file', mode: 0o666, size: 3, sha256: 'a' },
  { path: 'bin/tool', type: 'file', mode: 0o600, size: 3, sha256: 'b' },
  { path: 'link', type: 'file', mode: 0o666, size: 7, sha256: 'c' },
  { path: 'readme', type: 'file', mode: 0o444, size: 1, sha256: 'd' },
  { path: 'scripts/run.sh', type: 'file', mode: 0o640, size: 1, sha256: 'e' },
  { path: 'to-dir', type: 'link', mode: 0o777, size: 0, target: 'bin' }
]
const modes = (es: ManifestEntry[]) => Object.fromEntries(es.map(e => [e.path, e.mode.toString(8)]))

describe('settleModes', () => {
  test('POSIX: the tree decides, source.executable files are 0755', () => {
    const out = settleModes(entries, { platform: 'linux', executable: ['scripts/*.sh'] })
    expect(modes(out)).toEqual({
      '.': '700',
      bin: '666',
      'bin/restart': '666',
      'bin/tool': '600',
      link: '666',
      readme: '444',
      'scripts/run.sh': '755',
      'to-dir': '777'
    })
  })

  test('win32: dirs 0755, files 0644, 0755 from the git index or source.executable; git symlinks stay links', () => {
    const git = new Map([
      ['bin/restart', 0o100755],
      ['bin/tool', 0o100644],
      ['link', 0o120000]
    ])
    const out = settleModes(entries, { platform: 'win32', executable: ['*.sh'], git }, p =>
      p === 'link' ? 'bin/tool' : ''
    )
    expect(modes(out)).toEqual({
      '.': '755',
      bin: '755',
      'bin/restart': '755',
      'bin/tool': '644',
      link: '777',
      readme: '644',
      'scripts/run.sh': '755',
      'to-dir': '777'
    })
    expect(out.find(e => e.path === 'link')).toEqual({
      path: 'link',
      type: 'link',
      mode: 0o777,
      size: 0,
      target: 'bin/tool'
    })
  })

  test('win32 outside a git work tree: only source.executable gives 0755', () => {
    const out = settleModes(entries, { platform: 'win32', executable: ['bin/restart'] })
    expect(modes(out)['bin/restart']).toBe('755')
    expect(modes(out)['bin/tool']).toBe('644')
  })

  test('archive names: ./ or tree/ prefix, dirs end in /', () => {
    expect(tarName('./', entries[0] as ManifestEntry)).toBe('./')
    expect(tarName('./', entries[1] as ManifestEntry)).toBe('./bin/')
    expect(tarName('tree/', entries[2] as ManifestEntry)).toBe('tree/bin/restart')
  })
})

describe('readSource with the git index (real git)', () => {
  // chmod 0644 and /-joined paths: the win32 rules are checked on POSIX, where the tree has real modes
  posixOnly('win32 rules: mode 100755 in the index gives 0755 although the file is 0644', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pack-git-'))
    const git = (...args: string[]) => execFileSync('git', ['-C', dir, ...args], { stdio: 'pipe' })
    git('init', '-q')
    mkdirSync(join(dir, 'app', 'bin'), { recursive: true })
    writeFileSync(join(dir, 'app', 'bin', 'restart'), '#!/bin/sh\n')
    writeFileSync(join(dir, 'app', 'plain name.txt'), 'x\n')
    chmodSync(join(dir, 'app', 'bin', 'restart'), 0o644)
    git('add', '.')
    git('update-index', '--chmod=+x', 'app/bin/restart')
    const source = { exclude: [], executable: [] }
    const win = readSource(join(dir, 'app'), source, { platform: 'win32' })
    expect(modes(win.entries)).toEqual({
      '.': '755',
      bin: '755',
      'bin/restart': '755',
      'plain name.txt': '644'
    })
    // build_local's staging copy is outside the work tree: the index of source.dir is read for it
    const staging = mkdtempSync(join(tmpdir(), 'pack-staging-'))
    cpSync(join(dir, 'app'), staging, { recursive: true })
    expect(
      readSource(staging, source, { platform: 'win32' }).entries.find(e => e.path === 'bin/restart')?.mode
    ).toBe(0o644)
    const built = readSource(staging, source, { platform: 'win32', gitDir: join(dir, 'app') })
    expect(built.entries.find(e => e.path === 'bin/restart')?.mode).toBe(0o755)
    // on POSIX the tree decides
    const posix = readSource(join(dir, 'app'), source, { platform: 'linux' })
    expect(modes(posix.entries)['bin/restart']).toBe('644')
  })
})
