import { inRelease, removeReleases } from '../commands/release.js'
import { errorMessage } from '../core/errors.js'
import { runOn, type HostSession, type RunContext } from './context.js'
import { hookEnv } from './env.js'

/** Runs a user command from the config inside a release on a host. */
export async function runHook(
  ctx: RunContext,
  s: HostSession,
  release: string,
  label: string,
  command: string,
  stage: string,
  extraEnv: Record<string, string> = {}
): Promise<void> {
  await runOn(
    ctx,
    s,
    inRelease(s.layout, release, label, command, { ...hookEnv(ctx, s, release, stage), ...extraEnv }),
    {
      stage
    }
  )
}

/**
 * Removes release dirs on a host. `stages.prune` runs first inside each of them (SAFE_DEPLOY_RELEASE is the
 * release going away: `docker image rm app-web:$SAFE_DEPLOY_RELEASE`), so what a release built goes with it
 * and nothing a kept release needs; a failing prune command is a warning, the dir is removed all the same.
 */
export async function removeReleaseDirs(
  ctx: RunContext,
  s: HostSession,
  ids: string[],
  stage: string
): Promise<void> {
  const prune = ctx.config.stages.prune
  if (prune) {
    for (const id of ids) {
      await runHook(ctx, s, id, 'prune', prune, stage).catch(e =>
        ctx.log.warn(
          `stages.prune failed for ${id} (removing the release anyway): ${errorMessage(e)}`,
          s.host.name
        )
      )
    }
  }
  await runOn(ctx, s, removeReleases(s.layout, ids), { stage })
}
