import { describe, expect, test } from '@jest/globals'
import { Redactor } from '../../../src/report/redact.js'

const KEY = [
  '-----BEGIN OPENSSH PRIVATE KEY-----',
  'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
  'QyNTUxOQAAACBJd2Vhc2VsV2Vhc2VsV2Vhc2VsV2Vhc2VsV2Vhc2VsAAAAmF2AAAAAAAAA',
  'short',
  '-----END OPENSSH PRIVATE KEY-----'
].join('\n')

describe('Redactor', () => {
  test('replaces every occurrence of a secret', () => {
    const r = new Redactor(['hunter2-db'])
    expect(r.redact('pass=hunter2-db; again hunter2-db.')).toBe('pass=***; again ***.')
    expect(r.redact('nothing here')).toBe('nothing here')
  })

  test('a multi-line key is redacted whole, and line by line when it shows up in pieces', () => {
    const r = new Redactor([KEY])
    expect(r.redact(`key:\n${KEY}\nend`)).toBe('key:\n***\nend')
    const lines = KEY.split('\n')
    // one line of the key at a time, as a log line writer would see it
    expect(r.redact(`> ${lines[1]}`)).toBe('> ***')
    expect(r.redact(`${lines[2]} trailing`)).toBe('*** trailing')
    // the BEGIN/END markers and lines under 8 characters are not secrets on their own
    expect(r.redact(lines[0] as string)).toBe(lines[0])
    expect(r.redact('short')).toBe('short')
    // the key with CRLF line ends still has its lines redacted
    expect(new Redactor([KEY.replace(/\n/g, '\r\n')]).redact(lines[1] as string)).toBe('***')
  })

  test('the key with other line ends is still caught line by line', () => {
    const r = new Redactor([KEY])
    const lines = KEY.split('\n')
    const reflowed = lines.join('\r\n')
    expect(r.redact(reflowed)).toBe([lines[0], '***', '***', 'short', lines[4]].join('\r\n'))
  })

  test('the longest secret goes first, so a shorter one inside it leaves nothing behind', () => {
    const r = new Redactor(['abcd', 'abcdefgh-longer'])
    expect(r.redact('x abcdefgh-longer y abcd z')).toBe('x *** y *** z')
    const added = new Redactor(['abcd'])
    added.add('abcdefgh-longer')
    expect(added.redact('abcdefgh-longer')).toBe('***')
  })

  test('values under 4 characters are ignored (they would mangle every line)', () => {
    const r = new Redactor(['abc', 'a', ''])
    expect(r.redact('abc a b c')).toBe('abc a b c')
    r.add('xyz')
    expect(r.redact('xyz')).toBe('xyz')
    r.add('wxyz')
    expect(r.redact('wxyz!')).toBe('***!')
  })

  test('secrets with regex characters are matched literally', () => {
    const r = new Redactor(['a.b*c$(d)', 'p@ss[0]+'])
    expect(r.redact('a.b*c$(d) p@ss[0]+ aXbbc')).toBe('*** *** aXbbc')
  })

  test('adding the same secret twice changes nothing', () => {
    const r = new Redactor(['token-1234'])
    r.add('token-1234')
    expect(r.redact('token-1234token-1234')).toBe('******')
  })
})
