import { context, getOctokit } from '@actions/github'
import type { DeploymentRecord, DeploymentsApi } from './deployment.js'

/**
 * The Deployments REST calls through @actions/github's octokit (GITHUB_API_URL, the repository from
 * GITHUB_REPOSITORY), made on first use.
 */
export function octokitDeployments(token: string): () => DeploymentsApi {
  let api: DeploymentsApi | undefined
  return () => (api ??= lazy(token))
}

function lazy(token: string): DeploymentsApi {
  const gh = Promise.resolve().then(() => ({ octokit: getOctokit(token), repo: context.repo }))
  return {
    async create(params) {
      const { octokit, repo } = await gh
      const r = await octokit.rest.repos.createDeployment({
        ...repo,
        ...params,
        payload: { ...params.payload }
      })
      const id = (r.data as { id?: number }).id
      if (typeof id !== 'number') throw new Error(`no deployment was created (HTTP ${r.status})`)
      return { id }
    },
    async setStatus(id, params) {
      const { octokit, repo } = await gh
      await octokit.rest.repos.createDeploymentStatus({ ...repo, deployment_id: id, ...params })
    },
    async list(environment) {
      const { octokit, repo } = await gh
      const r = await octokit.rest.repos.listDeployments({ ...repo, environment, per_page: 100 })
      return r.data.map((d): DeploymentRecord => ({ id: d.id, sha: d.sha, payload: d.payload }))
    }
  }
}
