import { describe, expect, test } from '@jest/globals'
import { createHash, createHmac } from 'node:crypto'
import { fromHex, signatureLine, signatureMatches, signedMessage } from '../../../src/backup/sign.js'
import { checkBackupConfig } from '../../../src/backup-engines/plan.js'
import { backupSchema } from '../../../src/backup-engines/config.js'

const manifest = Buffer.from('0'.repeat(64) + '  shop_20261121_193000.dump\n')
const meta = Buffer.from('{"name":"shop_20261121_193000"}\n')
const KEY = 'k'.repeat(32)
const NAME = 'shop_20261121_193000'

describe('manifest signatures', () => {
  test('the message is the name and the hashes of the manifest and meta; the line is the HMAC of it', () => {
    const h = (b: Buffer) => createHash('sha256').update(b).digest('hex')
    expect(signedMessage(NAME, manifest, meta)).toBe(
      `safe-deploy-backup-v1\n${NAME}\n${h(manifest)}\n${h(meta)}\n`
    )
    const mac = createHmac('sha256', KEY)
      .update(signedMessage(NAME, manifest, meta))
      .digest('hex')
    expect(signatureLine(KEY, NAME, manifest, meta)).toBe(`safe-deploy-backup-v1 hmac-sha256 ${mac}`)
  })

  test('a match needs the same key, name, manifest and meta', () => {
    const line = signatureLine(KEY, NAME, manifest, meta)
    expect(signatureMatches(KEY, NAME, manifest, meta, line)).toBe(true)
    expect(signatureMatches(KEY, NAME, manifest, meta, `${line}\n`)).toBe(true)
    expect(signatureMatches('x'.repeat(32), NAME, manifest, meta, line)).toBe(false)
    expect(signatureMatches(KEY, 'shop_20261121_193001', manifest, meta, line)).toBe(false)
    expect(signatureMatches(KEY, NAME, Buffer.concat([manifest, Buffer.from('x')]), meta, line)).toBe(false)
    expect(signatureMatches(KEY, NAME, manifest, Buffer.from('{}'), line)).toBe(false)
    expect(signatureMatches(KEY, NAME, manifest, meta, '')).toBe(false)
    expect(signatureMatches(KEY, NAME, manifest, meta, line.slice(0, -1))).toBe(false)
  })

  test('hex from od; anything else is no bytes', () => {
    expect(fromHex('00ff41')).toEqual(Buffer.from([0, 255, 65]))
    expect(fromHex('')).toEqual(Buffer.alloc(0))
    expect(fromHex('0')).toBeUndefined()
    expect(fromHex('zz')).toBeUndefined()
    expect(fromHex(undefined)).toBeUndefined()
  })

  test('sign_key is a secret, and one shorter than 16 characters is refused', () => {
    const cfg = (sign_key: string) =>
      backupSchema.parse({ databases: [{ engine: 'sqlite', path: 'db.sqlite3' }], sign_key })
    expect(checkBackupConfig(cfg(KEY))).toEqual({ problems: [], secrets: [KEY] })
    const short = checkBackupConfig(cfg('abc'))
    expect(short.secrets).toEqual(['abc'])
    expect(short.problems).toEqual([
      'backup.sign_key: too short to be a key (at least 16 characters; make one with `openssl rand -hex 32` and give it as env:NAME)'
    ])
  })
})
