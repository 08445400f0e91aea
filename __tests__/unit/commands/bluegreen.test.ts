import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'
import { Layout } from '../../../src/commands/layout.js'
import {
  UPSTREAM_MARKER,
  activePortFile,
  clearActivePort,
  onPort,
  parseBlueGreenState,
  readBlueGreenState,
  renderUpstream,
  withPort,
  writeActivePort,
  writeUpstream
} from '../../../src/commands/bluegreen.js'
import { withEnv } from '../../../src/commands/command.js'
import { cleanup, hostileValues, runRemote, tempDir } from '../helpers/shell.js'

const ID = '20261121T193000Z-3f2a1c9'
const ID2 = '20261122T080000Z-local'
const PORTS = [8001, 8002] as const

describe('exact commands', () => {
  const l = new Layout('/srv/ledger')

  test('withPort and renderUpstream', () => {
    expect(withPort('http://127.0.0.1:{port}/health', 8002)).toBe('http://127.0.0.1:8002/health')
    expect(withPort('http://{host}:{port}/{port}', 8001, '10.0.0.5')).toBe('http://10.0.0.5:8001/8001')
    expect(withPort('http://{host}:{port}/', 8001)).toBe('http://{host}:8001/')
    // a value is not a replacement pattern
    expect(withPort('http://{host}/', 1, "$&$'$`")).toBe("http://$&$'$`/")
    expect(renderUpstream('server 127.0.0.1:{port};', 8001)).toBe('server 127.0.0.1:8001;\n')
    expect(renderUpstream('server a:{port};\nserver b:{port} backup;\n', 8002)).toBe(
      'server a:8002;\nserver b:8002 backup;\n'
    )
  })

  test('readBlueGreenState', () => {
    expect(readBlueGreenState(l, '/etc/nginx/conf.d/ledger upstream.conf')).toEqual({
      label: 'read blue-green state',
      script: [
        'state=/srv/ledger/.safe-deploy/active-port',
        "up='/etc/nginx/conf.d/ledger upstream.conf'",
        `if [ -f "$state" ]; then printf 'STATE=%s\\n' "$(head -n 1 "$state")"; fi`,
        `if [ -f "$up" ]; then printf 'UPSTREAM=1\\n%s\\n' '--- safe-deploy upstream file ---'; cat "$up"; fi`,
        'true'
      ].join('\n')
    })
  })

  test('writeActivePort and clearActivePort', () => {
    expect(activePortFile(l)).toBe('/srv/ledger/.safe-deploy/active-port')
    expect(writeActivePort(l, 8002, ID)).toEqual({
      label: 'record active port 8002',
      script: [
        'set -e',
        'mkdir -p /srv/ledger/.safe-deploy',
        'tmp=/srv/ledger/.safe-deploy/active-port.tmp.$$',
        `printf '%s %s\\n' 8002 ${ID} > "$tmp"`,
        'mv -f "$tmp" /srv/ledger/.safe-deploy/active-port'
      ].join('\n')
    })
    expect(clearActivePort(l)).toEqual({
      label: 'clear active port',
      script: 'rm -f /srv/ledger/.safe-deploy/active-port'
    })
  })

  test('writeUpstream', () => {
    expect(writeUpstream('/etc/nginx/conf.d/up.conf', "server 127.0.0.1:8001; # it's\n")).toEqual({
      label: 'write upstream file /etc/nginx/conf.d/up.conf',
      script: [
        'set -e',
        'f=/etc/nginx/conf.d/up.conf',
        'dir=$(dirname "$f")',
        `[ -d "$dir" ] || { printf 'the directory of upstream_file %s does not exist\\n' "$f" >&2; exit 1; }`,
        'tmp=$(mktemp "$dir/.safe-deploy-upstream.XXXXXX")',
        `trap 'rm -f "$tmp"' EXIT`,
        'if [ -f "$f" ]; then cp -p "$f" "$tmp"; else chmod 644 "$tmp"; fi',
        `printf '%s' 'server 127.0.0.1:8001; # it'\\''s\n' > "$tmp"`,
        'mv -fT "$tmp" "$f"'
      ].join('\n')
    })
  })

  test('onPort: {port} replaced, PORT and SAFE_DEPLOY_PORT set, inside the release', () => {
    expect(onPort(l, ID, 'start', 'bin/start --port {port}', 8002, { A: '1', PORT: '3000' })).toEqual({
      label: 'start port 8002',
      user: true,
      env: { A: '1', PORT: '8002', SAFE_DEPLOY_PORT: '8002' },
      script: `cd /srv/ledger/releases/${ID} || exit 1\nbin/start --port 8002`
    })
    expect(onPort(l, ID2, 'stop', 'systemctl stop app@{port}', 8001, {}).label).toBe('stop port 8001')
  })
})

describe('parseBlueGreenState', () => {
  const up = (content: string, state?: string) =>
    `${state === undefined ? '' : `STATE=${state}\n`}UPSTREAM=1\n${UPSTREAM_MARKER}\n${content}`

  test('the state file names the live port and release', () => {
    expect(parseBlueGreenState(up('server 127.0.0.1:8001;\n', `8002 ${ID}`), PORTS)).toEqual({
      active: { port: 8002, release: ID, from: 'state' },
      upstream: 'server 127.0.0.1:8001;\n'
    })
    expect(parseBlueGreenState(`STATE=8001 ${ID}\n`, PORTS)).toEqual({
      active: { port: 8001, release: ID, from: 'state' },
      upstream: undefined
    })
    expect(parseBlueGreenState('STATE=8001\n', PORTS).active).toEqual({
      port: 8001,
      release: undefined,
      from: 'state'
    })
  })

  test('no state file: the upstream file decides when it names exactly one port of the pair', () => {
    expect(parseBlueGreenState(up('server 127.0.0.1:8002;\n'), PORTS).active).toEqual({
      port: 8002,
      from: 'upstream'
    })
    expect(parseBlueGreenState(up('server 127.0.0.1:80011;\n'), PORTS).active).toBeUndefined()
    expect(parseBlueGreenState(up('server a:8001;\nserver b:8002;\n'), PORTS).active).toBeUndefined()
    expect(parseBlueGreenState(up('server unix:/run/app.sock;'), PORTS).active).toBeUndefined()
    expect(parseBlueGreenState('', PORTS)).toEqual({ upstream: undefined })
  })

  test('a state file with a port outside the pair is ignored with a warning', () => {
    const st = parseBlueGreenState(up('server 127.0.0.1:8001;', `9000 ${ID}`), PORTS)
    expect(st.active).toEqual({ port: 8001, from: 'upstream' })
    expect(st.warning).toBe('the state file names port "9000", not one of 8001 and 8002; ignored')
  })

  test('the upstream bytes come back exactly, marker lines and KEY=value lines included', () => {
    const content = `STATE=8002 x\n${UPSTREAM_MARKER}\nserver 127.0.0.1:8001;\n\n`
    const st = parseBlueGreenState(up(content), PORTS)
    expect(st.upstream).toBe(content)
    // only `:8001` names a port; the STATE= line inside the file is content, not state
    expect(st.active).toEqual({ port: 8001, from: 'upstream' })
    expect(parseBlueGreenState(up(''), PORTS).upstream).toBe('')
  })
})

describe('scripts run for real with /bin/sh, under a hostile root', () => {
  let base: string
  let root: string
  let l: Layout
  let confDir: string
  let upstream: string
  const marker = 'PWNED'

  beforeEach(() => {
    base = tempDir('bluegreen')
    root = join(base, `deploy root 'q' "dq" $(touch ${marker}) \`touch ${marker}\`; x`)
    mkdirSync(root)
    l = new Layout(root)
    confDir = join(base, `conf 'd' $(touch ${marker})`)
    mkdirSync(confDir)
    upstream = join(confDir, 'app upstream.conf')
  })
  afterEach(() => {
    expect(existsSync(join(base, marker))).toBe(false)
    cleanup(base)
  })

  const exec = (script: string) => runRemote(script, { cwd: base })

  test('state: nothing, then written, read back, replaced, cleared', async () => {
    let r = await exec(readBlueGreenState(l, upstream).script)
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' })
    expect(parseBlueGreenState(r.stdout, PORTS)).toEqual({ upstream: undefined })

    expect((await exec(writeActivePort(l, 8001, ID).script)).code).toBe(0)
    expect(readFileSync(activePortFile(l), 'utf8')).toBe(`8001 ${ID}\n`)
    r = await exec(readBlueGreenState(l, upstream).script)
    expect(r.stdout).toBe(`STATE=8001 ${ID}\n`)
    expect(parseBlueGreenState(r.stdout, PORTS).active).toEqual({ port: 8001, release: ID, from: 'state' })

    expect((await exec(writeActivePort(l, 8002, ID2).script)).code).toBe(0)
    expect(readFileSync(activePortFile(l), 'utf8')).toBe(`8002 ${ID2}\n`)
    // no temp file is left behind
    expect(readdirSync(l.meta)).toEqual(['active-port'])

    expect((await exec(clearActivePort(l).script)).code).toBe(0)
    expect(existsSync(activePortFile(l))).toBe(false)
    expect((await exec(clearActivePort(l).script)).code).toBe(0)
  })

  test('upstream: created 0644, replaced keeping its mode, read back byte for byte', async () => {
    const first = renderUpstream('server 127.0.0.1:{port};', 8001)
    let r = await exec(writeUpstream(upstream, first).script)
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' })
    expect(readFileSync(upstream, 'utf8')).toBe('server 127.0.0.1:8001;\n')
    expect(statSync(upstream).mode & 0o777).toBe(0o644)

    chmodSync(upstream, 0o640)
    const hostile = `# ${hostileValues(join(base, marker)).join(' | ')}\nserver 127.0.0.1:8002;\n`
    r = await exec(writeUpstream(upstream, hostile).script)
    expect(r.code).toBe(0)
    expect(readFileSync(upstream, 'utf8')).toBe(hostile)
    expect(statSync(upstream).mode & 0o777).toBe(0o640)
    expect(readdirSync(confDir)).toEqual(['app upstream.conf'])

    r = await exec(readBlueGreenState(l, upstream).script)
    expect(r.code).toBe(0)
    const st = parseBlueGreenState(r.stdout, PORTS)
    expect(st.upstream).toBe(hostile)

    // no trailing newline survives too
    await exec(writeUpstream(upstream, 'server 127.0.0.1:8001;').script)
    r = await exec(readBlueGreenState(l, upstream).script)
    expect(parseBlueGreenState(r.stdout, PORTS)).toEqual({
      active: { port: 8001, from: 'upstream' },
      upstream: 'server 127.0.0.1:8001;'
    })
  })

  test('upstream: a missing directory fails with a message and creates nothing', async () => {
    const r = await exec(writeUpstream(join(base, 'no such dir', 'up.conf'), 'x').script)
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(
      `the directory of upstream_file ${join(base, 'no such dir', 'up.conf')} does not exist\n`
    )
    expect(existsSync(join(base, 'no such dir'))).toBe(false)
  })

  test('upstream: a directory in its place is not written into, and no temp file is left', async () => {
    writeFileSync(upstream, 'old\n')
    const dirTarget = join(confDir, 'a dir')
    mkdirSync(join(dirTarget, 'x'), { recursive: true })
    const r = await exec(writeUpstream(join(dirTarget, 'x'), 'new\n').script)
    expect(r.code).not.toBe(0)
    expect(readdirSync(dirTarget)).toEqual(['x'])
    expect(readdirSync(join(dirTarget, 'x'))).toEqual([])
    expect(readFileSync(upstream, 'utf8')).toBe('old\n')
  })

  test('onPort runs the command in the release with the port in argv and env', async () => {
    const rel = l.release(ID)
    mkdirSync(rel, { recursive: true })
    const cmd = onPort(
      l,
      ID,
      'start',
      `printf '%s %s %s %s\\n' "$(pwd)" {port} "$PORT" "$SAFE_DEPLOY_PORT"`,
      8002,
      {
        PORT: '1'
      }
    )
    const r = await exec(withEnv(cmd))
    expect(r).toEqual({ code: 0, stdout: `${rel} 8002 8002 8002\n`, stderr: '' })
  })
})
