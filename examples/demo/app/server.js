// The demo app: a tiny HTTP server with a health endpoint. A release that ships a file named BROKEN
// answers 500 on /health, which is how the demo shows an automatic rollback.
import { createServer } from 'node:http'
import { existsSync, readFileSync } from 'node:fs'

const version = readFileSync(new URL('./VERSION', import.meta.url), 'utf8').trim()
const broken = existsSync(new URL('./BROKEN', import.meta.url))
const port = Number(process.env.PORT ?? 18080)

createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(broken ? 500 : 200, { 'content-type': 'text/plain' })
    res.end(broken ? `broken ${version}\n` : `ok ${version}\n`)
    return
  }
  res.writeHead(200, { 'content-type': 'text/plain' })
  res.end(`demo app version ${version}\n`)
}).listen(port, '127.0.0.1', () => console.log(`demo app ${version} listening on ${port}`))

process.on('SIGTERM', () => process.exit(0))
