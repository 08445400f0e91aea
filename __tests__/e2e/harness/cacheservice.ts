/**
 * A stand-in for the GitHub Actions cache service (cache v2: Twirp JSON at ACTIONS_RESULTS_URL, and the blob
 * store its signed URLs point at), recording every request, so that a test runs the real @actions/cache
 * client up to its HTTP boundary and asserts the keys, versions and archives it sent.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface CacheRequest {
  method: string
  path: string
  /** The Twirp method (GetCacheEntryDownloadURL, CreateCacheEntry, FinalizeCacheEntryUpload), or `blob`. */
  call: string
  body: Record<string, unknown>
}

export interface CacheService {
  /** ACTIONS_RESULTS_URL and the other variables a runner gives a step for the cache. */
  env: NodeJS.ProcessEnv
  requests: CacheRequest[]
  /** The archives stored, by key. */
  entries: Map<string, { version: string; archive: Buffer }>
  close(): Promise<void>
}

const TWIRP = '/twirp/github.actions.results.api.v1.CacheService/'

export async function startCacheService(): Promise<CacheService> {
  const requests: CacheRequest[] = []
  const entries = new Map<string, { version: string; archive: Buffer }>()
  const pending = new Map<string, { key: string; version: string }>()
  let base = ''
  let next = 1
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks)
      const url = new URL(req.url ?? '/', base)
      const json = (status: number, v: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(v))
      }
      if (url.pathname.startsWith(TWIRP) && req.method === 'POST') {
        const call = url.pathname.slice(TWIRP.length)
        const body = JSON.parse(raw.toString() || '{}') as Record<string, unknown>
        requests.push({ method: 'POST', path: url.pathname, call, body })
        const key = String(body.key)
        const version = String(body.version)
        if (call === 'GetCacheEntryDownloadURL') {
          const e = entries.get(key)
          if (!e || e.version !== version)
            return json(200, { ok: false, signedDownloadUrl: '', matchedKey: '' })
          return json(200, {
            ok: true,
            signedDownloadUrl: `${base}blob/get/${encodeURIComponent(key)}`,
            matchedKey: key
          })
        }
        if (call === 'CreateCacheEntry') {
          const id = String(next++)
          pending.set(id, { key, version })
          return json(200, { ok: true, signedUploadUrl: `${base}devstoreaccount1/cache/${id}` })
        }
        if (call === 'FinalizeCacheEntryUpload') return json(200, { ok: true, entryId: '1' })
        return json(404, { code: 'not_found', msg: call })
      }
      if (url.pathname.startsWith('/blob/get/') && req.method === 'GET') {
        const key = decodeURIComponent(url.pathname.slice('/blob/get/'.length))
        requests.push({ method: 'GET', path: url.pathname, call: 'blob', body: { key } })
        const e = entries.get(key)
        if (!e) return json(404, {})
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': e.archive.length })
        return res.end(e.archive)
      }
      if (url.pathname.startsWith('/devstoreaccount1/cache/') && req.method === 'PUT') {
        const id = url.pathname.split('/').pop() as string
        requests.push({ method: 'PUT', path: url.pathname, call: 'blob', body: { bytes: raw.length } })
        const p = pending.get(id)
        if (p) entries.set(p.key, { version: p.version, archive: raw })
        res.writeHead(201, { etag: '"1"', 'last-modified': new Date().toUTCString(), 'content-md5': '' })
        return res.end()
      }
      json(404, {})
    })
  })
  await new Promise<void>(done => server.listen(0, '127.0.0.1', done))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
  return {
    env: {
      ACTIONS_RESULTS_URL: base,
      ACTIONS_RUNTIME_TOKEN: 'test-runtime-token',
      ACTIONS_CACHE_SERVICE_V2: 'true'
    },
    requests,
    entries,
    close: () => new Promise(done => server.close(() => done()))
  }
}
