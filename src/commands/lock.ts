import { sh } from './quote.js'
import { script, type RemoteCommand } from './command.js'
import type { Layout } from './layout.js'

/** Who holds the lock; written by us as one JSON line in .safe-deploy/lock/owner.json. */
export interface LockOwner {
  who: string
  run?: string
  pid: number
  runner: string
  command: string
  token: string
  started: string
  expires: string
  expires_epoch: number
}

export type LockOwnerFields = Omit<LockOwner, 'started' | 'expires' | 'expires_epoch'>

/** Serializes lock operations on a host when flock(1) is there; mkdir alone is still atomic without it. */
const guard = (layout: Layout) => [
  `meta=${sh(layout.meta)}`,
  `lock=${sh(layout.lock)}`,
  'mkdir -p "$meta" || exit 20',
  'exec 9>>"$meta/lock.guard"',
  'if command -v flock >/dev/null 2>&1; then flock -w 15 9 || true; fi'
]

/** Writes owner.json with the host's clock: started now, expires after ttl. */
const writeOwner = (owner: LockOwnerFields, ttlSeconds: number) => {
  const head = JSON.stringify(owner).slice(0, -1)
  return [
    'now=$(date -u +%s)',
    `exp=$((now + ${Math.max(1, Math.floor(ttlSeconds))}))`,
    'started=$(date -u +%Y-%m-%dT%H:%M:%SZ)',
    'expiso=$(date -u -d "@$exp" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo "")',
    `printf '%s,"started":"%s","expires":"%s","expires_epoch":%s}\\n' ${sh(head)} "$started" "$expiso" "$exp" > "$lock/owner.json.tmp"`,
    'mv -f "$lock/owner.json.tmp" "$lock/owner.json"'
  ]
}

/**
 * Takes the lock: `mkdir` is atomic. A lock whose owner.json says it expired (by the host's clock) is taken
 * over. Prints STATE=acquired|taken-over|held and OWNER=<json> of the holder or the previous holder.
 */
export function acquireLock(layout: Layout, owner: LockOwnerFields, ttlSeconds: number): RemoteCommand {
  return {
    label: 'take the deploy lock',
    script: script(
      ...guard(layout),
      'now=$(date -u +%s)',
      'if mkdir "$lock" 2>/dev/null; then state=acquired',
      'else',
      '  exp=$(sed -n \'s/.*"expires_epoch":\\([0-9][0-9]*\\).*/\\1/p\' "$lock/owner.json" 2>/dev/null | head -n 1)',
      `  [ -n "$exp" ] || exp=$(( $(stat -c %Y "$lock" 2>/dev/null || echo "$now") + ${Math.floor(ttlSeconds)} ))`,
      '  printf "OWNER=%s\\n" "$(cat "$lock/owner.json" 2>/dev/null | head -n 1)"',
      '  if [ "$now" -lt "$exp" ]; then echo STATE=held; exit 0; fi',
      '  rm -rf "$lock" && mkdir "$lock" || { echo STATE=held; exit 0; }',
      '  state=taken-over',
      'fi',
      ...writeOwner(owner, ttlSeconds),
      'echo "STATE=$state"'
    )
  }
}

/** Extends our lock's expiry; does nothing to a lock someone else holds. */
export function renewLock(layout: Layout, owner: LockOwnerFields, ttlSeconds: number): RemoteCommand {
  return {
    label: 'renew the deploy lock',
    script: script(
      ...guard(layout),
      `grep -qF ${sh(`"token":"${owner.token}"`)} "$lock/owner.json" 2>/dev/null || { echo STATE=lost; exit 0; }`,
      ...writeOwner(owner, ttlSeconds),
      'echo STATE=renewed'
    )
  }
}

/** Releases the lock if `token` owns it; with no token (a person's `lock release`), whoever holds it. */
export function releaseLock(layout: Layout, token?: string): RemoteCommand {
  return {
    label: 'release the deploy lock',
    script: script(
      ...guard(layout),
      '[ -d "$lock" ] || { echo STATE=free; exit 0; }',
      'printf "OWNER=%s\\n" "$(cat "$lock/owner.json" 2>/dev/null | head -n 1)"',
      token
        ? `grep -qF ${sh(`"token":"${token}"`)} "$lock/owner.json" 2>/dev/null || { echo STATE=not-ours; exit 0; }`
        : undefined,
      'rm -rf "$lock" && echo STATE=released'
    )
  }
}

export function lockStatus(layout: Layout): RemoteCommand {
  return {
    label: 'read the deploy lock',
    script: script(
      `lock=${sh(layout.lock)}`,
      '[ -d "$lock" ] || { echo STATE=free; exit 0; }',
      'printf "OWNER=%s\\n" "$(cat "$lock/owner.json" 2>/dev/null | head -n 1)"',
      'printf "NOW=%s\\n" "$(date -u +%s)"',
      'echo STATE=held'
    )
  }
}

/**
 * Takes the lock and, only when this run got it, runs `then` in the same script (one round trip): preflight's
 * inspection of the lock host. The lock's lines come first (STATE, OWNER); when the lock is held by another
 * run, nothing after it runs, so what a caller reads past the lock is always read under our lock.
 */
export function acquireLockThen(
  layout: Layout,
  owner: LockOwnerFields,
  ttlSeconds: number,
  then: RemoteCommand[]
): RemoteCommand {
  const lock = acquireLock(layout, owner, ttlSeconds)
  if (!then.length) return lock
  return {
    label: lock.label,
    parts: [lock.label, ...then.flatMap(t => t.parts ?? [t.label])],
    script: script(
      // in a subshell: its `exit` ends the lock part only, and the flock guard is let go with it
      'lockout=$(',
      lock.script,
      ')',
      `printf '%s\\n' "$lockout"`,
      `printf '%s\\n' "$lockout" | grep -qxE 'STATE=(acquired|taken-over)' || exit 0`,
      ...then.map(t => t.script)
    )
  }
}
