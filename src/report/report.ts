import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Redactor } from './redact.js'

/**
 * Writes a run's JSON report (`deploy_20261121_193005.json` next to the log): the result, redacted, mode
 * 0600. Throws when it cannot (a full runner disk); the lifecycle's report subscriber turns that into one
 * warning (src/engine/lifecycle.ts).
 */
export function writeReport(file: string, result: unknown, redactor: Redactor): void {
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, redactor.redact(JSON.stringify(result, null, 2)) + '\n', { mode: 0o600 })
}
