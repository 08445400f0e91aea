/**
 * A TCP proxy for fault injection: listens on 127.0.0.1:<free port> and forwards every connection to a target
 * (an sshd of the harness). The test decides when the network fails:
 *
 *   cut()               drops every open connection now (a reset both ways: what a dead link or a rebooted
 *                       NAT looks like to both ends); new connections are accepted again at once
 *   cutAfterBytes(n)    the same, once n more bytes went from the client to the server (mid-upload)
 *   refuse() / accept() new connections are reset as soon as they arrive (the host is unreachable) until
 *                       accept() is called, or for `ms` when given
 *
 * Point a safe-deploy host at `proxy.host:proxy.port` and give it `knownHostsLineFor(host)` as known_hosts:
 * the host key is still the sshd's, so host key checking works through the proxy.
 */
import net from 'node:net'

export interface TcpProxyTarget {
  address: string
  port: number
}

export interface TcpProxy {
  readonly host: string
  readonly port: number
  /** Connections accepted and forwarded so far. */
  readonly accepted: number
  /** Connections reset on arrival because the proxy was refusing. */
  readonly refused: number
  /** Connections cut by cut() or cutAfterBytes(). */
  readonly cuts: number
  /** Connections open right now. */
  readonly open: number
  /** Bytes forwarded from clients to the target so far. */
  readonly bytesUp: number
  /** Drops every open connection now; returns how many were dropped. */
  cut(): number
  /** Drops every open connection once `bytes` more bytes went upstream; resolves with how many were dropped. */
  cutAfterBytes(bytes: number): Promise<number>
  /** Resets new connections on arrival until accept() (or for `ms`). Open connections are not touched. */
  refuse(ms?: number): void
  accept(): void
  /** The known_hosts line of an sshd of the harness, rewritten for the proxy's address and port. */
  knownHostsLineFor(knownHostsLine: string): string
  close(): Promise<void>
}

interface Pair {
  client: net.Socket
  server: net.Socket
}

function kill(socket: net.Socket): void {
  socket.removeAllListeners('data')
  socket.on('error', () => undefined)
  if (!socket.destroyed) socket.resetAndDestroy()
}

/** Starts a proxy to `target`; close() it in afterAll. */
export function startTcpProxy(target: TcpProxyTarget): Promise<TcpProxy> {
  const pairs = new Set<Pair>()
  let refusing = false
  let refuseTimer: NodeJS.Timeout | undefined
  let accepted = 0
  let refused = 0
  let cuts = 0
  let bytesUp = 0
  let armed: { at: number; resolve: (n: number) => void } | undefined

  const cutAll = (): number => {
    const n = pairs.size
    for (const p of pairs) {
      kill(p.client)
      kill(p.server)
    }
    pairs.clear()
    cuts += n
    return n
  }

  const server = net.createServer(client => {
    client.on('error', () => undefined)
    if (refusing) {
      refused++
      kill(client)
      return
    }
    accepted++
    client.setNoDelay(true)
    const upstream = net.connect({ host: target.address, port: target.port })
    upstream.setNoDelay(true)
    upstream.on('error', () => undefined)
    const pair: Pair = { client, server: upstream }
    pairs.add(pair)
    const drop = () => {
      if (!pairs.delete(pair)) return
      client.destroy()
      upstream.destroy()
    }
    client.on('close', drop)
    upstream.on('close', drop)
    client.on('data', (chunk: Buffer) => {
      bytesUp += chunk.length
      if (!upstream.write(chunk)) {
        client.pause()
        upstream.once('drain', () => client.resume())
      }
      if (armed && bytesUp >= armed.at) {
        const { resolve } = armed
        armed = undefined
        resolve(cutAll())
      }
    })
    upstream.on('data', (chunk: Buffer) => {
      if (!client.write(chunk)) {
        upstream.pause()
        client.once('drain', () => upstream.resume())
      }
    })
  })

  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      if (!address || typeof address === 'string') return reject(new Error('tcpproxy: no port'))
      const port = address.port
      resolve({
        host: '127.0.0.1',
        port,
        get accepted() {
          return accepted
        },
        get refused() {
          return refused
        },
        get cuts() {
          return cuts
        },
        get open() {
          return pairs.size
        },
        get bytesUp() {
          return bytesUp
        },
        cut: cutAll,
        cutAfterBytes: bytes =>
          new Promise<number>(done => {
            armed = { at: bytesUp + bytes, resolve: done }
          }),
        refuse(ms) {
          refusing = true
          if (refuseTimer) clearTimeout(refuseTimer)
          refuseTimer = ms === undefined ? undefined : setTimeout(() => (refusing = false), ms)
        },
        accept() {
          refusing = false
          if (refuseTimer) clearTimeout(refuseTimer)
          refuseTimer = undefined
        },
        knownHostsLineFor: line => line.replace(/^\S+/, `[127.0.0.1]:${port}`),
        close: () =>
          new Promise<void>(done => {
            if (refuseTimer) clearTimeout(refuseTimer)
            cutAll()
            server.close(() => done())
          })
      })
    })
  })
}
