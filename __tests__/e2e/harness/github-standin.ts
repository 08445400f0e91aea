/**
 * A local HTTP server standing in for GitHub's services, which cannot be reached from here: the REST API
 * (`GITHUB_API_URL`: deployments and their statuses), the Actions results service (`ACTIONS_RESULTS_URL`:
 * the Twirp calls CreateArtifact / FinalizeArtifact) and the blob storage the signed upload URL points at
 * (what @azure/storage-blob sends: PUT ?comp=block, then PUT ?comp=blocklist). It records every request and
 * keeps what was uploaded, so a test can assert our use of the real client libraries up to their HTTP boundary.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface RecordedRequest {
  method: string
  path: string
  query: Record<string, string>
  authorization?: string
  body: string
}

export interface StandinDeployment {
  id: number
  sha: string
  ref: string
  environment: string
  payload: unknown
  production_environment?: boolean
  transient_environment?: boolean
  auto_merge?: boolean
  required_contexts?: string[]
  statuses: Record<string, unknown>[]
}

export interface GithubStandin {
  url: string
  requests: RecordedRequest[]
  deployments: StandinDeployment[]
  /** Uploaded artifacts by name: the bytes committed to the blob, and what FinalizeArtifact was told. */
  artifacts: Map<
    string,
    { bytes: Buffer; create: Record<string, unknown>; finalize?: Record<string, unknown> }
  >
  /** Answer CreateArtifact with this HTTP status (the service refusing the upload). */
  refuseArtifacts?: number
  /** Answer every deployments call with this HTTP status (a token without `deployments: write`). */
  refuseDeployments?: number
  /** The environment a runner gives a step that talks to this stand-in. */
  env(): NodeJS.ProcessEnv
  close(): Promise<void>
}

/** `header.payload.signature` with the `scp` claim @actions/artifact reads the backend ids from. */
export function runtimeToken(run = 'run-backend-1', job = 'job-backend-1'): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({ scp: `Actions.GenericRead Actions.Results:${run}:${job}` })}.c2ln`
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

export async function startGithubStandin(): Promise<GithubStandin> {
  const blocks = new Map<string, Buffer>()
  const s: GithubStandin = {
    url: '',
    requests: [],
    deployments: [],
    artifacts: new Map(),
    env: () => ({
      GITHUB_API_URL: s.url,
      GITHUB_SERVER_URL: 'https://github.com',
      GITHUB_REPOSITORY: 'octo/shop',
      GITHUB_RUN_ID: '4242',
      GITHUB_RUN_ATTEMPT: '1',
      GITHUB_JOB: 'deploy',
      ACTIONS_RESULTS_URL: `${s.url}/`,
      ACTIONS_RUNTIME_TOKEN: runtimeToken(),
      'INPUT_GITHUB-TOKEN': 'ghs_standintoken0000000000000000000',
      'INPUT_UPLOAD-ARTIFACT': 'true'
    }),
    close: async () => {
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
  let nextId = 1000
  const json = (res: import('node:http').ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
  const server: Server = createServer(async (req, res) => {
    const raw = await readBody(req)
    const url = new URL(req.url ?? '/', 'http://standin')
    const query = Object.fromEntries(url.searchParams.entries())
    const path = url.pathname
    s.requests.push({
      method: req.method ?? '',
      path,
      query,
      authorization: req.headers.authorization,
      body: path.startsWith('/blob/') ? `<${raw.length} bytes>` : raw.toString('utf8')
    })
    const body = () => (raw.length ? (JSON.parse(raw.toString('utf8')) as Record<string, unknown>) : {})

    // the REST API: deployments and their statuses
    const deployments = /^\/repos\/[^/]+\/[^/]+\/deployments(?:\/(\d+)\/statuses)?$/.exec(path)
    if (deployments) {
      if (s.refuseDeployments)
        return json(res, s.refuseDeployments, {
          message: 'Resource not accessible by integration',
          documentation_url: 'https://docs.github.com/rest/deployments/deployments'
        })
      if (deployments[1]) {
        const d = s.deployments.find(x => x.id === Number(deployments[1]))
        if (!d) return json(res, 404, { message: 'Not Found' })
        if (req.method !== 'POST') return json(res, 200, d.statuses)
        const st = { id: nextId++, ...body() }
        d.statuses.push(st)
        return json(res, 201, st)
      }
      if (req.method === 'POST') {
        const b = body()
        const d: StandinDeployment = {
          id: nextId++,
          sha: String(b.ref),
          ref: String(b.ref),
          environment: String(b.environment ?? 'production'),
          payload: b.payload ?? {},
          production_environment: b.production_environment as boolean | undefined,
          transient_environment: b.transient_environment as boolean | undefined,
          auto_merge: b.auto_merge as boolean | undefined,
          required_contexts: b.required_contexts as string[] | undefined,
          statuses: []
        }
        s.deployments.push(d)
        const { statuses: _statuses, ...shown } = d
        return json(res, 201, shown)
      }
      const list = [...s.deployments]
        .reverse()
        .filter(d => !query.environment || d.environment === query.environment)
        .map(({ statuses: _statuses, ...d }) => d)
      return json(res, 200, list)
    }

    // the results service (Twirp, JSON)
    const twirp = /^\/twirp\/github\.actions\.results\.api\.v1\.ArtifactService\/(\w+)$/.exec(path)
    if (twirp) {
      const b = body()
      const name = String(b.name)
      if (twirp[1] === 'CreateArtifact' && s.refuseArtifacts)
        return json(res, s.refuseArtifacts, {
          code: 'invalid_argument',
          msg: 'the stand-in refuses this artifact'
        })
      if (twirp[1] === 'CreateArtifact') {
        s.artifacts.set(name, { bytes: Buffer.alloc(0), create: b })
        return json(res, 200, {
          ok: true,
          signed_upload_url: `${s.url}/blob/actions-results/${encodeURIComponent(name)}.zip?sig=standinsig`
        })
      }
      if (twirp[1] === 'FinalizeArtifact') {
        const a = s.artifacts.get(name)
        if (!a) return json(res, 404, { code: 'not_found', msg: 'no such artifact' })
        a.finalize = b
        return json(res, 200, { ok: true, artifact_id: '777' })
      }
      return json(res, 404, { code: 'bad_route', msg: `no method ${twirp[1]}` })
    }

    // the blob storage: staged blocks, then the block list that commits them in order
    if (path.startsWith('/blob/') && req.method === 'PUT') {
      const blob = path
      const headers = { 'x-ms-request-id': `req-${nextId++}`, 'x-ms-version': '2025-01-05', etag: '"0x1"' }
      if (query.comp === 'block') {
        blocks.set(`${blob}#${query.blockid}`, raw)
        res.writeHead(201, headers)
        return res.end()
      }
      const name = decodeURIComponent(blob.replace(/^\/blob\/actions-results\//, '').replace(/\.zip$/, ''))
      const a = s.artifacts.get(name)
      if (query.comp === 'blocklist') {
        const ids = [...raw.toString('utf8').matchAll(/<(?:Latest|Uncommitted|Committed)>([^<]*)</g)].map(
          m => m[1] as string
        )
        if (a) a.bytes = Buffer.concat(ids.map(id => blocks.get(`${blob}#${id}`) ?? Buffer.alloc(0)))
      } else if (a) a.bytes = raw
      res.writeHead(201, { ...headers, 'last-modified': new Date().toUTCString() })
      return res.end()
    }
    json(res, 404, { message: `the stand-in has no ${req.method} ${path}` })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', () => resolve()))
  s.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return s
}
