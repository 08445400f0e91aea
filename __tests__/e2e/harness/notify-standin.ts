/**
 * A local HTTP server standing in for the chat APIs a notification goes to (Telegram's Bot API, Slack, Discord
 * and Teams webhooks, a generic webhook): none of them is reachable from the tests. It records every request
 * (method, path, headers, raw body) and answers as told: by default 200 with Telegram's `{"ok":true,...}`,
 * which every channel accepts; `reply` scripts the answers (a status, Retry-After, or `hang`: never answer).
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Recorded {
  method: string
  path: string
  headers: IncomingHttpHeaders
  body: string
  /** The body parsed as JSON. */
  json: () => unknown
}

export type Reply = { status: number; body?: string; headers?: Record<string, string> } | 'hang'

export interface StandIn {
  /** http://127.0.0.1:<port> */
  url: string
  requests: Recorded[]
  /** The answer to the n-th request (0-based) to `path`; undefined: the default. */
  reply: (fn: (r: Recorded, n: number) => Reply | undefined) => void
  close: () => Promise<void>
}

const OK: Reply = { status: 200, body: '{"ok":true,"result":{"message_id":1}}' }

export async function startStandIn(): Promise<StandIn> {
  const requests: Recorded[] = []
  const hanging: ServerResponse[] = []
  let script: (r: Recorded, n: number) => Reply | undefined = () => undefined
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', c => chunks.push(c as Buffer))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const r: Recorded = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body,
        json: () => JSON.parse(body) as unknown
      }
      const n = requests.filter(x => x.path === r.path).length
      requests.push(r)
      const answer = script(r, n) ?? OK
      if (answer === 'hang') {
        hanging.push(res)
        return
      }
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers })
      res.end(answer.body ?? '')
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    reply: fn => {
      script = fn
    },
    close: async () => {
      for (const res of hanging) res.destroy()
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
