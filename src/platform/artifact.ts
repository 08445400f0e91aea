import { existsSync, readdirSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type { RunResult } from '../pipeline/result.js'
import { errorMessage } from '../core/errors.js'

/** What the Action uploads after a run (src/platform/github.ts): inputs `upload-artifact`, `artifact-*`. */
export interface ArtifactOptions {
  upload: boolean
  /** Input `artifact-name`; default `safe-deploy-<job>-<run_attempt>`. */
  name: string
  retentionDays?: number
}

/** The part of @actions/artifact's client the Action uses (a fake in unit tests). */
export interface ArtifactUploader {
  uploadArtifact(
    name: string,
    files: string[],
    rootDirectory: string,
    options?: { retentionDays?: number }
  ): Promise<{ id?: number; size?: number }>
}

export interface UploadedArtifact {
  id: number
  url?: string
}

/** Characters the artifact service refuses in a name (NTFS-unsafe): replaced by `-`. */
const BAD_NAME = /["*:<>?|\\/\r\n]/g

/** `safe-deploy-<job>-<attempt>`, one artifact per job attempt (a re-run gets its own). */
export function artifactName(env: NodeJS.ProcessEnv, input?: string): string {
  const name = input || `safe-deploy-${env.GITHUB_JOB || 'job'}-${env.GITHUB_RUN_ATTEMPT || '1'}`
  return name.replace(BAD_NAME, '-')
}

/** The artifact's page: `<server>/<repo>/actions/runs/<run id>/artifacts/<id>`; unset outside a run. */
export function artifactUrl(env: NodeJS.ProcessEnv, id: number): string | undefined {
  if (!env.GITHUB_REPOSITORY || !env.GITHUB_RUN_ID) return undefined
  const server = env.GITHUB_SERVER_URL || 'https://github.com'
  return `${server}/${env.GITHUB_REPOSITORY}/actions/runs/${env.GITHUB_RUN_ID}/artifacts/${id}`
}

/**
 * The run's files on the runner: its log, its JSON report and, when `download: true` copied the backup next
 * to the log, that backup's files (named after it; `.partial` copies that failed their checksum are not).
 * Other runs' files in the log dir are not this run's and stay out.
 */
export function artifactFiles(r: RunResult): { root: string; files: string[] } | undefined {
  const own = [r.logFile, r.reportFile].filter((f): f is string => !!f && existsSync(f))
  const first = own[0]
  if (!first) return undefined
  const root = dirname(first)
  const backup = r.backupName
    ? readdirSync(root)
        .filter(f => f.startsWith(`${r.backupName}.`) && !f.endsWith('.partial'))
        .map(f => join(root, f))
    : []
  return { root, files: [...own.filter(f => dirname(f) === root), ...backup] }
}

/** Why there is no artifact service here (GHES, a local run), or undefined when there is one. */
export function missingService(env: NodeJS.ProcessEnv): string | undefined {
  const missing = ['ACTIONS_RUNTIME_TOKEN', 'ACTIONS_RESULTS_URL'].filter(k => !env[k])
  return missing.length ? `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not set` : undefined
}

/**
 * Uploads the run's files as one artifact. Never throws: when there is no artifact service (GHES, a local
 * run) or the upload fails, one warning says so and where the files are (the outputs keep their paths).
 */
export async function uploadRunArtifact(
  r: RunResult,
  opts: ArtifactOptions,
  client: () => Promise<ArtifactUploader>,
  warn: (message: string) => void,
  env: NodeJS.ProcessEnv = process.env
): Promise<UploadedArtifact | undefined> {
  if (!opts.upload) return undefined
  const found = artifactFiles(r)
  if (!found) return undefined
  const where = `the files stay on the runner: ${found.files.map(f => basename(f)).join(', ')} in ${found.root} (outputs log-file, report-file)`
  const missing = missingService(env)
  if (missing) {
    warn(
      `artifact not uploaded: there is no artifact service (${missing}; GitHub Enterprise Server?); ${where}`
    )
    return undefined
  }
  try {
    const up = await (
      await client()
    ).uploadArtifact(opts.name, found.files, found.root, {
      ...(opts.retentionDays ? { retentionDays: opts.retentionDays } : {})
    })
    if (up.id === undefined) throw new Error('the artifact service returned no id')
    return { id: up.id, url: artifactUrl(env, up.id) }
  } catch (e) {
    const ghes = (e as Error)?.name === 'GHESNotSupportedError'
    warn(
      ghes
        ? `artifact not uploaded: GitHub Enterprise Server has no artifact service for @actions/artifact; ${where}`
        : `artifact ${opts.name} not uploaded (${errorMessage(e)}); ${where}`
    )
    return undefined
  }
}
