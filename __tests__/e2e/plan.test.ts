/**
 * `plan` is a dry run of the deploy's real stages (src/flows/plan.ts): on a local host
 * (`hosts: [{ local: true }]`), what `plan` shows and what a real deploy of the same config then runs are the
 * same commands, by label, in the same order. The real deploy's commands are seen at the local transport.
 */
import { afterAll, beforeAll, describe, expect, jest, test } from '@jest/globals'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir } from './harness/sshd.js'
import { currentOf, historyOf, project, stopApp, type Project } from './support.js'
import { LocalTransport } from '../../src/transport/local.js'
import { loadConfig } from '../../src/config/load.js'
import { planDeploy } from '../../src/flows/plan.js'
import type { ExecOptions } from '../../src/transport/types.js'

let root: string
let p: Project

beforeAll(async () => {
  root = join(tempDir('plan-local-'), 'srv')
  p = await project({
    hosts: [],
    local: true,
    root,
    config: c => ({
      ...c,
      stages: {
        build: 'echo built > BUILD_OK',
        migrate: { command: 'cp REVISION data/revision', revision: 'cat data/revision 2>/dev/null || echo 0' }
      },
      switch: { strategy: 'graceful', reload: 'bin/restart' },
      verify: {
        ...(c.verify as object),
        command: 'test -f BUILD_OK',
        logs: { command: `cat ${root}/shared/logs/app.log 2>/dev/null || true`, fail_on: ['FATAL'] }
      }
    })
  })
})

afterAll(async () => {
  jest.restoreAllMocks()
  await stopApp(join(root, 'shared', 'app.pid'))
})

const src = () => join(p.dir, 'app')

describe('plan on a local host', () => {
  test('v1 deploys for real, so that the host serves a release as the plan assumes', async () => {
    p.app({ version: '1.0.0' })
    writeFileSync(join(src(), 'REVISION'), '1\n')
    const r = await p.deploy()
    expect(r.stderr).toContain('DEPLOYMENT SUCCESS')
    expect(r.code).toBe(0)
  })

  test('plan and the real deploy run the same command labels in the same order', async () => {
    p.app({ version: '2.0.0' })
    writeFileSync(join(src(), 'REVISION'), '2\n')
    const before = currentOf(root)

    const loaded = loadConfig(p.configFile, {}, p.env)
    const plan = await planDeploy({
      loaded,
      reporter: { info() {}, warn() {}, error() {}, startGroup() {}, endGroup() {} }
    })
    const planned = plan.records.filter(r => !r.onRunner).flatMap(r => r.parts ?? [r.label])
    // the plan changed nothing
    expect(currentOf(root)).toBe(before)

    const seen: string[] = []
    const exec = LocalTransport.prototype.exec
    const spy = jest.spyOn(LocalTransport.prototype, 'exec').mockImplementation(function (
      this: LocalTransport,
      command: string,
      o?: ExecOptions
    ) {
      if (this.label !== 'runner') seen.push(...(o?.parts ?? [o?.label ?? command]))
      return exec.call(this, command, o)
    })
    const r = await p.deploy()
    spy.mockRestore()
    expect(r.stderr).toContain('DEPLOYMENT SUCCESS')
    expect(r.code).toBe(0)
    // what the deploy ran before its finish step (history, log, lock), which `plan` names in words
    const ran = seen.slice(0, seen.indexOf('record history'))
    expect(ran.length).toBeGreaterThan(10)
    // the release name's time part is the second each run started
    const id = (l: string) => l.replace(/\d{8}T\d{6}Z-[0-9a-z]+/g, '<release>')
    expect(planned.map(id)).toEqual(ran.map(id))
    // the stages the old plan left out are there
    for (const label of ['migration revision', 'migrate', 'reload', 'verify command', 'log scan'])
      expect(planned).toContain(label)
    expect(planned.filter(l => l === 'migration revision')).toHaveLength(2)
    expect(historyOf(root).at(-1)).toMatchObject({ status: 'success', revision: '1', migrated: true })
  })

  test('the CLI plan prints them under a header per stage and host', async () => {
    const r = await p.run(['plan'])
    expect(r.code).toBe(0)
    for (const header of [
      '## preflight on local',
      '## deploy on local',
      '## migrate on local',
      '## switch on local',
      '## verify on local'
    ])
      expect(r.stdout).toContain(`\n${header}\n`)
    expect(r.stdout).toContain('\n# reload\n')
    expect(r.stdout).toContain('\n# log scan\n')
    expect(existsSync(join(root, 'releases'))).toBe(true)
  })
})
