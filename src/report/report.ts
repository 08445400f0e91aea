import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { RunSubscriber } from '../engine/events.js'
import type { Redactor } from './redact.js'

/**
 * The JSON report next to the log (`deploy_20261121_193005.json`): the run's result, redacted, mode 0600.
 * When it cannot be written (a full runner disk) the run is not changed: one warning, and the result's
 * `reportFile` is cleared so that no output points at a file that is not there.
 */
export function reportFile(redactor: Redactor, warn: (message: string) => void): RunSubscriber {
  return {
    name: 'the report file',
    on(e) {
      if (e.type !== 'run-finished' || !e.result.reportFile) return
      const file = e.result.reportFile
      try {
        mkdirSync(dirname(file), { recursive: true })
        writeFileSync(file, redactor.redact(JSON.stringify(e.result, null, 2)) + '\n', { mode: 0o600 })
      } catch (err) {
        warn(`cannot write the report file ${file} (${(err as Error)?.message ?? String(err)})`)
        e.result.reportFile = undefined
      }
    }
  }
}
