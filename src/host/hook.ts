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

/** The hooks at named points of a run (config `hooks`). */
export type HookName = 'before_switch' | 'after_verify' | 'after_rollback'

/**
 * Runs `hooks.<name>` inside a release on a host, if configured, with the run's variables and
 * SAFE_DEPLOY_HOOK=<name>. Its failure is a StageError of `stage` naming the hook, the host and the exit code.
 */
export async function runNamedHook(
  ctx: RunContext,
  s: HostSession,
  name: HookName,
  release: string,
  stage: string,
  extraEnv: Record<string, string> = {}
): Promise<void> {
  // (a config built by hand, not parsed, may have no `hooks`)
  const command = (ctx.config.hooks as Partial<typeof ctx.config.hooks> | undefined)?.[name]
  if (!command) return
  ctx.log.info(`hooks.${name} in releases/${release}`, s.host.name)
  await runHook(ctx, s, release, `hooks.${name}`, command, stage, { ...extraEnv, SAFE_DEPLOY_HOOK: name })
}

/** runNamedHook for the hooks whose failure changes nothing in the run: it is a warning naming the host. */
export async function runWarningHook(
  ctx: RunContext,
  s: HostSession,
  name: HookName,
  release: string,
  stage: string,
  why: string,
  extraEnv: Record<string, string> = {}
): Promise<void> {
  await runNamedHook(ctx, s, name, release, stage, extraEnv).catch(e =>
    ctx.log.warn(`WARNING: ${errorMessage(e)} (${why})`, s.host.name)
  )
}
