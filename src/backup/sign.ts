import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

/**
 * The optional manifest signature (`backup.sign_key`). A backup's `.sha256` manifest proves integrity:
 * the files are the bytes the manifest lists. It does not prove who made them: anyone who can write the
 * backup dir can write an archive and a matching manifest. With a key, NAME.sig holds
 *
 *   HMAC-SHA256(key, "safe-deploy-backup-v1\n" NAME "\n" sha256(NAME.sha256) "\n" sha256(NAME.meta.json) "\n")
 *
 * (hashes in lower-case hex), computed on the runner over the bytes the host sent back, so the key never
 * leaves the runner: it is on no command line, in no script and in no environment on the host.
 */
const SIGNATURE_VERSION = 'safe-deploy-backup-v1'

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** The signed message: the name and the hashes of the manifest and meta file. */
export function signedMessage(name: string, manifest: Buffer, meta: Buffer): string {
  return `${SIGNATURE_VERSION}\n${name}\n${sha256(manifest)}\n${sha256(meta)}\n`
}

/** The HMAC in hex. */
export function signature(key: string, name: string, manifest: Buffer, meta: Buffer): string {
  return createHmac('sha256', key)
    .update(signedMessage(name, manifest, meta))
    .digest('hex')
}

/** The content of NAME.sig: one line, `safe-deploy-backup-v1 hmac-sha256 <hex>`. */
export function signatureLine(key: string, name: string, manifest: Buffer, meta: Buffer): string {
  return `${SIGNATURE_VERSION} hmac-sha256 ${signature(key, name, manifest, meta)}`
}

/** Whether `line` (NAME.sig's first line) is the right signature; compared in constant time. */
export function signatureMatches(
  key: string,
  name: string,
  manifest: Buffer,
  meta: Buffer,
  line: string
): boolean {
  const want = Buffer.from(signatureLine(key, name, manifest, meta))
  const got = Buffer.from(line.trim())
  return got.length === want.length && timingSafeEqual(got, want)
}

/** `od -An -v -tx1` output (hex bytes, spaces and line breaks removed by the script) to bytes. */
export function fromHex(hex: string | undefined): Buffer | undefined {
  if (hex === undefined || !/^(?:[0-9a-f]{2})*$/.test(hex)) return undefined
  return Buffer.from(hex, 'hex')
}
