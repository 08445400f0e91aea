import { inRelease } from '../commands/release.js'
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
