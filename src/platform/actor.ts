import { localActor, type Actor } from '../host/context.js'

/** Who runs this, for the lock owner, history and the report: the CI user, run URL and commit when there is a CI. */
export function defaultActor(env: NodeJS.ProcessEnv = process.env): Actor {
  const who = env.GITHUB_ACTOR ?? env.GITLAB_USER_LOGIN ?? localActor().who
  const run =
    env.GITHUB_SERVER_URL && env.GITHUB_REPOSITORY && env.GITHUB_RUN_ID
      ? `${env.GITHUB_SERVER_URL}/${env.GITHUB_REPOSITORY}/actions/runs/${env.GITHUB_RUN_ID}`
      : env.CI_JOB_URL
  return { who, run, commit: env.GITHUB_SHA ?? env.CI_COMMIT_SHA }
}
