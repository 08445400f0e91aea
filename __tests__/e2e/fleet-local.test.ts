/**
 * A fleet of 12 hosts (local transport, each its own deploy root) deployed by the CLI in a process of its own:
 * every command in flight listens on the run's abort signal, one per host, and node's default limit of 10
 * listeners would print `MaxListenersExceededWarning` into the deploy's output. The run's signals have none.
 * (The CLI runs as a child: in jest's sandbox node does not take the sandbox's AbortSignal for an EventTarget.)
 */
import { describe, expect, test } from '@jest/globals'
import { existsSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir } from './harness/sshd.js'
import { spawnCli } from './harness/cliproc.js'
import { project } from './support.js'

describe('a fleet of more than 10 hosts', () => {
  test('deploys to every host with no MaxListenersExceededWarning', async () => {
    const root = join(tempDir('fleet-local-'), 'srv')
    const names = Array.from({ length: 12 }, (_, i) => `h${String(i + 1).padStart(2, '0')}`)
    const p = await project({
      hosts: [],
      local: true,
      root,
      config: c => ({
        ...c,
        hosts: names.map(name => ({ name, local: true, path: join(root, name) })),
        shared: { files: [], dirs: [] },
        stages: { restart: 'test -f VERSION' },
        verify: { command: 'test -f VERSION' }
      })
    })
    p.app({ version: '1.0.0' })
    const run = spawnCli(['deploy', '--config', p.configFile], p.env, p.dir)
    const r = await run.exited
    expect(`${r.stdout}${r.stderr}`).not.toContain('MaxListenersExceededWarning')
    expect(r.code).toBe(0)
    for (const name of names) {
      const current = join(root, name, 'current')
      expect(existsSync(current)).toBe(true)
      expect(readlinkSync(current)).toMatch(/^releases\//)
    }
  })
})
