import type { HostSession, RunContext } from './context.js'

/** Environment for user commands on a host: the config's `env` plus SAFE_DEPLOY_* facts about the run. */
export function hookEnv(
  ctx: RunContext,
  s: HostSession,
  release: string,
  stage: string
): Record<string, string> {
  return {
    ...ctx.config.env,
    SAFE_DEPLOY_APP: ctx.config.app,
    SAFE_DEPLOY_PATH: s.layout.root,
    SAFE_DEPLOY_SHARED: s.layout.shared,
    SAFE_DEPLOY_RELEASE: release,
    SAFE_DEPLOY_RELEASE_PATH: s.layout.release(release),
    SAFE_DEPLOY_PREVIOUS_RELEASE: s.current ?? '',
    SAFE_DEPLOY_STAGE: stage,
    SAFE_DEPLOY_HOST: s.host.name,
    SAFE_DEPLOY_HOST_ADDRESS: s.host.kind === 'local' ? '127.0.0.1' : s.host.address
  }
}
