/**
 * `safe-deploy doctor` against real sshd hosts: it lists what a deploy would meet, per host, with the fix,
 * shares preflight's checks (a missing shared file is the same sentence), and changes nothing: a host that
 * never had a deploy still has no deploy root afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fastShell, startSshd, stopAll, type SshHost } from './harness/sshd.js'
import { project, stopApp } from './support.js'
import type { DoctorReport } from '../../src/flows/doctor.js'

let a: SshHost
let b: SshHost
const pidFiles: string[] = []

beforeAll(async () => {
  a = await startSshd({ extraConfig: fastShell() })
  b = await startSshd({ extraConfig: fastShell() })
})

afterAll(async () => {
  for (const f of pidFiles) await stopApp(f)
  await stopAll()
})

describe('doctor', () => {
  test('a healthy host after a deploy: exit 0, every check listed', async () => {
    const root = a.root('doctor-ok')
    const p = await project({ hosts: [a], root })
    pidFiles.push(join(root, 'shared', 'app.pid'))
    p.app({ version: '1.0.0' })
    expect((await p.deploy()).code).toBe(0)
    const r = await p.run(['doctor'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(`${a.address}:${a.port}:`)
    expect(r.stdout).toContain('✓ ssh: connected; host key verified')
    expect(r.stdout).toContain(`✓ layout: ${root} is writable`)
    expect(r.stdout).toMatch(/✓ disk: \d+ MB free under /)
    expect(r.stdout).toContain('✓ lock: the deploy lock is free')
    expect(r.stdout).toMatch(/· history: \S+ deploy \S+ by \S+: success/)
    expect(r.stdout).toContain('no problem a deploy would stop on')
  })

  test('problems with their fixes: exit 3; a fresh host is left exactly as it was', async () => {
    const root = b.root('doctor-fresh')
    const p = await project({
      hosts: [b],
      root,
      config: c => ({
        ...c,
        shared: { files: ['.env', 'config/app.ini'], dirs: [] },
        stages: { ...(c.stages as object), restart: 'sudo -u nobody /bin/true && bin/restart' }
      })
    })
    // project() created shared/.env on the host: take the whole root away, as on a host never deployed to
    b.run(`rm -rf '${root}'`)
    const r = await p.run(['doctor', '--json'])
    expect(r.code).toBe(3)
    const rep = JSON.parse(r.stdout) as DoctorReport
    const by = (check: string) => rep.findings.filter(f => f.check === check)
    expect(by('layout')[0]).toMatchObject({
      level: 'info',
      message: `${root} does not exist yet; the first deploy creates it`
    })
    // the sentence preflight would stop with, and the fix
    expect(by('shared files')[0]).toMatchObject({
      level: 'error',
      message: expect.stringContaining(`shared files .env, config/app.ini missing on ${b.address}:${b.port}`)
    })
    expect(by('shared files')[0]?.fix).toContain(`create ${root}/shared/.env, ${root}/shared/config/app.ini`)
    // a `sudo` in a command is checked on the host: root may sudo anything, when sudo is there at all
    const sudo = spawnSync('sh', ['-c', 'command -v sudo'], { encoding: 'utf8' }).status === 0
    expect(by('sudo')[0]).toMatchObject(
      sudo
        ? { level: 'ok', message: 'may run `sudo -u nobody /bin/true`' }
        : {
            level: 'error',
            message: `sudo is not installed on ${b.address}:${b.port}, and the config runs \`sudo -u nobody /bin/true\``
          }
    )
    // nothing was created
    expect(existsSync(root)).toBe(false)
  })

  test('a host whose sshd is down: the ssh check fails with what to look at', async () => {
    const c = await startSshd({ extraConfig: fastShell() })
    const root = c.root('doctor-down')
    mkdirSync(root, { recursive: true })
    writeFileSync(join(root, 'x'), '')
    const p = await project({ hosts: [a, c], root })
    await c.stop()
    const r = await p.run(['doctor', '--json'])
    expect(r.code).toBe(3)
    const rep = JSON.parse(r.stdout) as DoctorReport
    const ssh = rep.findings.find(f => f.check === 'ssh' && f.host === `${c.address}:${c.port}`)
    expect(ssh).toMatchObject({ level: 'error' })
    expect(ssh?.fix).toContain('check the address and port, that sshd runs')
  })
})
