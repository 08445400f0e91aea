import type { RolloutConfig } from '../config/schema.js'

/**
 * The batches of a rollout (`rollout.batch`), as host names, in the order they switch: config order, with the
 * primary first (it is where the migration ran, and the first batch is the canary). A size is a number of
 * hosts, or a share of the selected hosts ("25%", rounded up, at least 1); a ramp list gives the size of each
 * batch in turn and its last size repeats. Without `rollout`: one batch of every host.
 */
export function rolloutBatches(
  hosts: { name: string; primary?: boolean }[],
  rollout: RolloutConfig | undefined
): string[][] {
  const primary = hosts.find(h => h.primary) ?? hosts[0]
  const names = [...(primary ? [primary.name] : []), ...hosts.filter(h => h !== primary).map(h => h.name)]
  if (!rollout || !names.length) return names.length ? [names] : []
  const sizes = (Array.isArray(rollout.batch) ? rollout.batch : [rollout.batch]).map(b =>
    typeof b === 'number' ? b : Math.max(1, Math.ceil((Number(b.slice(0, -1)) * names.length) / 100))
  )
  const batches: string[][] = []
  for (let at = 0, i = 0; at < names.length; i++) {
    const size = sizes[Math.min(i, sizes.length - 1)] as number
    batches.push(names.slice(at, at + size))
    at += size
  }
  return batches
}
