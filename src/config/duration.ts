/** Parses `500ms`, `10s`, `2m`, `1h` or a bare number of seconds into milliseconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number')
    return Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : undefined
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value)
  if (!m) return undefined
  const n = Number(m[1])
  const unit = m[2] ?? 's'
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000
  return Math.round(n * factor)
}
