import { sh } from '../commands/quote.js'
import type { Compression } from './name.js'

/** Compressor reading stdin, writing stdout; undefined for none. zstd uses every core (-T0). */
export function compressCommand(c: Compression): string | undefined {
  return c === 'gzip' ? 'gzip -c' : c === 'zstd' ? 'zstd -q -c -T0' : undefined
}

export function decompressCommand(c: Compression): string | undefined {
  return c === 'gzip' ? 'gzip -dc' : c === 'zstd' ? 'zstd -q -dc' : undefined
}

/** Encrypts stdin to every recipient (public keys only: nothing secret on this command line). */
export function encryptCommand(recipients: string[]): string {
  return `age ${recipients.map(r => `-r ${sh(r)}`).join(' ')}`
}

/** Decrypts stdin with the identity file the script wrote (mode 0600, removed by its trap). */
export function decryptCommand(identityFile: string): string {
  return `age -d -i "${identityFile}"`
}

/** The first line of every age file. */
export const AGE_HEADER = 'age-encryption.org/v1'
