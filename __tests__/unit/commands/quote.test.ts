import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { sh, shJoin } from '../../../src/commands/quote.js'
import { cleanup, hostileValues, shells, tempDir } from '../helpers/shell.js'

describe('sh', () => {
  test.each([
    ['abc', 'abc'],
    ['/srv/ledger/releases/20261121T193000Z-3f2a1c9', '/srv/ledger/releases/20261121T193000Z-3f2a1c9'],
    ['user@host:22,x+y=z%', 'user@host:22,x+y=z%'],
    ['-rf', '-rf'],
    ['a b', "'a b'"],
    ["a'b", `'a'\\''b'`],
    ["'", `''\\'''`],
    ['', "''"],
    ['$(touch x)', "'$(touch x)'"],
    ['`id`', "'`id`'"],
    ['; rm -rf x', "'; rm -rf x'"],
    ['a\nb', "'a\nb'"],
    ['*', "'*'"],
    ['~', "'~'"],
    ['é', "'é'"],
    ['"$HOME"', `'"$HOME"'`],
    ['back\\slash', "'back\\slash'"]
  ])('sh(%j) is %s', (value, expected) => {
    expect(sh(value)).toBe(expected)
  })

  test('numbers are written as their decimal text', () => {
    expect(sh(42)).toBe('42')
    expect(sh(-1)).toBe('-1')
    expect(sh(1.5)).toBe('1.5')
    expect(sh(0)).toBe('0')
  })

  test('a NUL byte is refused, wherever it is', () => {
    expect(() => sh('a\0b')).toThrow('a value passed to the shell contains a NUL byte')
    expect(() => sh('\0')).toThrow(/NUL/)
    expect(() => shJoin(['ok', 'bad\0'])).toThrow(/NUL/)
  })
})

describe('shJoin', () => {
  test('quotes each word and joins them with one space', () => {
    expect(shJoin(['printf', '%s|', 'a b', "c'd", 3, ''])).toBe(`printf '%s|' 'a b' 'c'\\''d' 3 ''`)
    expect(shJoin([])).toBe('')
  })

  test('the joined line passes every word through literally', () => {
    const words = ['a b', "c'd", '$(echo no)', '', '*']
    const out = execFileSync('/bin/sh', ['-c', shJoin(['printf', '[%s]', ...words])], { encoding: 'utf8' })
    expect(out).toBe(words.map(w => `[${w}]`).join(''))
  })
})

describe('hostile values stay literal when run', () => {
  let dir: string
  let marker: string
  beforeAll(() => {
    dir = tempDir('quote')
    marker = join(dir, 'pwned-XYZ')
  })
  afterAll(() => cleanup(dir))

  const list = shells()

  test('the shells under test include /bin/sh', () => {
    expect(list[0]).toBe('/bin/sh')
  })

  describe.each(list)('%s', shell => {
    test('printf %s <sh(v)> prints exactly v, and nothing ran', () => {
      for (const v of hostileValues(marker)) {
        const out = execFileSync(shell, ['-c', 'printf %s ' + sh(v)], { cwd: dir })
        expect({ v, out: out.toString('utf8') }).toEqual({ v, out: v })
      }
      expect(existsSync(marker)).toBe(false)
      expect(readdirSync(dir)).toEqual([])
    })

    test('a hostile value is one word, however many spaces or newlines it holds', () => {
      for (const v of hostileValues(marker)) {
        const out = execFileSync(shell, ['-c', 'printf "%s|" ' + shJoin([v, v])], { cwd: dir })
        expect(out.toString('utf8')).toBe(`${v}|${v}|`)
      }
      expect(readdirSync(dir)).toEqual([])
    })
  })
})
