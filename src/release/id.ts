import { ConfigError } from '../core/exit.js'

declare const brand: unique symbol
/** `20261121T193000Z-3f2a1c9`: UTC time + short commit (or `local`); sortable, unique, readable. */
export type ReleaseId = string & { readonly [brand]: 'ReleaseId' }

const RELEASE_ID = /^\d{8}T\d{6}Z-[A-Za-z0-9]{1,40}$/

export function newReleaseId(now: Date, commit: string | undefined): ReleaseId {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')
  const tag = commit && /^[0-9a-f]{7,40}$/i.test(commit) ? commit.slice(0, 7).toLowerCase() : 'local'
  return `${stamp}-${tag}` as ReleaseId
}

export function isReleaseId(value: string): value is ReleaseId {
  return RELEASE_ID.test(value)
}

/** Parses a release name given by a person (`rollback --to`); bad input fails before any connection. */
export function parseReleaseId(value: string, what = 'release'): ReleaseId {
  if (!isReleaseId(value)) {
    throw new ConfigError(
      `${what} ${JSON.stringify(value)} is not a release name; expected the form 20261121T193000Z-3f2a1c9 (see \`safe-deploy releases\`)`
    )
  }
  return value
}
