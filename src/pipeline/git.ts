import { execFileSync } from 'node:child_process'

/**
 * The commit checked out in `dir`, or undefined when it is not a git work tree (the release is then `-local`).
 * A checkout owned by another user (a CI container's workspace) is read too: this only reads HEAD.
 */
export function gitCommit(dir: string): string | undefined {
  try {
    const out = execFileSync('git', ['-c', 'safe.directory=*', '-C', dir, 'rev-parse', 'HEAD'], {
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5000
    })
    const sha = out.toString().trim()
    return /^[0-9a-f]{40}$/.test(sha) ? sha : undefined
  } catch {
    return undefined
  }
}
