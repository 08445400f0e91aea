import type { Reporter } from '../report/log.js'
import type { RunSubscriber } from './events.js'

/**
 * The log's group structure as a subscriber of the run events: one group per stage (`== verify` on the
 * terminal, `::group::verify` on GitHub), opened on `stage-started` and closed on `stage-finished`, and one
 * `rollback` group around the undos: opened by the first undo, closed by the last (`lastUndo`), so a run with
 * nothing to undo shows no `== rollback` header. The lines inside stay the log's (src/report/log.ts); what a
 * group looks like is the platform's Reporter (src/platform/terminal.ts, src/platform/github.ts).
 */
export function stageGroups(reporter: Reporter): RunSubscriber {
  let open = false
  let rollback = false
  const start = (title: string) => {
    open = true
    reporter.startGroup(title)
  }
  const end = () => {
    if (!open) return
    open = false
    reporter.endGroup()
  }
  return {
    name: 'the log groups',
    on: e => {
      if (e.type === 'stage-started' && e.phase === 'run') start(e.stage)
      else if (e.type === 'stage-finished' && e.phase === 'run') end()
      else if (e.type === 'stage-started' && !rollback) {
        rollback = true
        start('rollback')
      } else if (e.type === 'stage-finished' && e.lastUndo) {
        rollback = false
        end()
      } else if (e.type === 'run-finished') end()
    }
  }
}
