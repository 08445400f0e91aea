import type { HostSession, RunContext } from './context.js'

/** Environment for user commands on a host: the config's `env` plus SAFE_DEPLOY_* facts about the run. */
export function hookEnv(ctx: RunContext, s: HostSession, release: string, stage: string): Record<string, string> {
  return {
    ...ctx.config.env,
    SAFE_DEPLOY_APP: ctx.config.app,
    SAFE_DEPLOY_PATH: ctx.layout.root,
    SAFE_DEPLOY_SHARED: ctx.layout.shared,
    SAFE_DEPLOY_RELEASE: release,
    SAFE_DEPLOY_RELEASE_PATH: ctx.layout.release(release),
    SAFE_DEPLOY_PREVIOUS_RELEASE: s.current ?? '',
    SAFE_DEPLOY_STAGE: stage,
    SAFE_DEPLOY_HOST: s.host.name
  }
}
