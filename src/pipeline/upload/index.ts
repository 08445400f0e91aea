/**
 * How the source gets into a new release directory on each host. One file per strategy (tar.ts,
 * incremental.ts), one line each in the registry below; the config picks one with `upload.strategy` (src/config/schema.ts).
 */
import type { RemoteCommand } from '../../commands/command.js'
import type { UploadConfig } from '../../config/schema.js'
import type { HostSession, RunContext } from '../../host/context.js'
import { incrementalUpload } from './incremental.js'
import { tarUpload } from './tar.js'

/** One instance per run: `prepare` once on the runner, `send` per host, `finish` after every host. */
export interface UploadStrategy {
  readonly name: string
  /**
   * On the runner before any host gets the release (tar: pack `dir` once: source.dir, or the staging dir
   * stages.build_local built in). Shown in plan.
   */
  prepare(ctx: RunContext, dir: string): Promise<void>
  /**
   * Fills the new, empty `releases/<release>` on `s` with the source. Throws a StageError on failure. `then`
   * (the shared links, the completion marker) runs on the host after it, in the same command: nothing between
   * them needs the runner. A failure of either is the upload's failure.
   */
  send(ctx: RunContext, s: HostSession, release: string, then?: RemoteCommand[]): Promise<void>
  /** Removes what `prepare` made on the runner; never throws. */
  finish(): void
}

const strategies: { readonly [K in UploadConfig['strategy']]: () => UploadStrategy } = {
  tar: tarUpload,
  incremental: incrementalUpload
}

export function uploadFor(ctx: RunContext): UploadStrategy {
  return strategies[ctx.config.upload.strategy]()
}
