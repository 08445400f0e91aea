/**
 * `backups upload`: a backup copied off the server (`backups download`) is put back after its checksums are
 * checked on the runner and again on the host, protected from retention, and `restore` uses it: the rows of
 * the SQLite database come back. A copy that is not whole is refused before anything is sent.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { appendFileSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { project, stopApp, type Project } from './support.js'

let host: SshHost
let root: string
let p: Project
let dbFile: string

const sqlite = (sql: string) => execFileSync('sqlite3', [dbFile], { input: sql, encoding: 'utf8' })
const backupsDir = () => join(root, 'backups')
const onHost = () => (existsSync(backupsDir()) ? readdirSync(backupsDir()).sort() : [])

beforeAll(async () => {
  host = await startSshd()
  root = host.root('uploads')
  p = await project({
    hosts: [host],
    root,
    config: c => ({
      ...c,
      app: 'bot',
      backup: { databases: [{ engine: 'sqlite', path: 'shared/data/bot.sqlite3' }] }
    })
  })
  dbFile = join(root, 'shared', 'data', 'bot.sqlite3')
  host.run(`mkdir -p '${join(root, 'shared', 'data')}'`)
  sqlite("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'kept');")
}, 120_000)

afterAll(async () => {
  await stopApp(join(root, 'shared', 'app.pid'))
  await stopAll()
})

describe('backups upload', () => {
  let name: string
  let copy: string

  test('a backup downloaded, then gone from the host, is uploaded back, checked and protected', async () => {
    const b = await p.run(['backup', '--json'])
    expect(b.code).toBe(0)
    name = (JSON.parse(b.stdout) as { backupName: string }).backupName
    copy = tempDir('backup-copy-')
    const d = await p.run(['backups', 'download', name, '--out', copy])
    expect(d.code).toBe(0)
    // the server lost it (a disk replaced, a prune by hand)
    for (const f of onHost().filter(f => f.startsWith(name))) rmSync(join(backupsDir(), f))
    expect(onHost().filter(f => f.startsWith(name))).toEqual([])

    const u = await p.run(['backups', 'upload', join(copy, `${name}.sha256`)])
    expect(u.code).toBe(0)
    expect(u.stdout).toContain(`${name}: uploaded to ${backupsDir()}`)
    expect(u.stdout).toContain(`restore it with: safe-deploy restore ${name} --yes`)
    // the bytes on the host are the copy's, mode 0600, no partial left, and a .keep marker
    for (const f of readdirSync(copy)) {
      expect(readFileSync(join(backupsDir(), f))).toEqual(readFileSync(join(copy, f)))
      expect(host.run(`stat -c %a '${join(backupsDir(), f)}'`).trim()).toBe('600')
    }
    expect(onHost().filter(f => f.endsWith('.partial'))).toEqual([])
    expect(onHost()).toContain(`${name}.keep`)
    const list = await p.run(['backups', 'list', '--json'])
    const listed = (
      JSON.parse(list.stdout) as { backups: { name: string; complete: boolean; protected: boolean }[] }
    ).backups
    expect(listed.find(x => x.name === name)).toMatchObject({ complete: true, protected: true })
  })

  test('uploading it again sends nothing; restore puts its rows back', async () => {
    const again = await p.run(['backups', 'upload', copy])
    expect(again.code).toBe(0)
    expect(again.stdout).toContain('with the same checksums; nothing sent')
    sqlite("DELETE FROM items; INSERT INTO items VALUES (2, 'written later');")
    const r = await p.run(['restore', name, '--yes'])
    expect(r.code).toBe(0)
    expect(sqlite('SELECT id, name FROM items ORDER BY id;').trim()).toBe('1|kept')
  })

  test('a copy whose bytes do not match its manifest is refused on the runner: exit 2, nothing sent', async () => {
    const bad = tempDir('backup-bad-')
    execFileSync('cp', ['-a', `${copy}/.`, bad])
    const data = readdirSync(bad).find(
      f => f.startsWith(name) && /\.sqlite3|\.db|\.gz|\.zst/.test(f)
    ) as string
    expect(data).toBeDefined()
    appendFileSync(join(bad, data), 'x')
    // a fresh name on the host would be needed to send it: take it off first
    for (const f of onHost().filter(f => f.startsWith(name))) rmSync(join(backupsDir(), f))
    const u = await p.run(['backups', 'upload', bad])
    expect(u.code).toBe(2)
    expect(u.stderr).toContain(`the copy of ${name} in ${bad} is not whole; nothing was sent`)
    expect(u.stderr).toContain(`${data}: sha256 does not match the manifest`)
    expect(onHost().filter(f => f.startsWith(name))).toEqual([])
  })
})
