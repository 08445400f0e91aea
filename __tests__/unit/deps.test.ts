/**
 * The dependency rule (scripts/check-deps.mjs, run by `npm run lint`): folders of src/ form layers, imports
 * point down only, no cycles between folders, and only platform/ knows GitHub and GitLab. The script runs as
 * a real process, against src/ and against small trees that break the rule one way each.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { afterEach, describe, expect, test } from '@jest/globals'
import { cleanup, tempDir } from './helpers/shell.js'

// from this file, not the working directory (other test files in the same worker may chdir)
const here = import.meta.dirname ?? new URL('.', import.meta.url).pathname
const SCRIPT = resolve(here, '..', '..', 'scripts', 'check-deps.mjs')

function check(src?: string): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [SCRIPT, ...(src ? [`--src=${src}`] : [])], { encoding: 'utf8' })
  return { status: r.status, out: r.stdout, err: r.stderr }
}

let dir: string | undefined
afterEach(() => {
  cleanup(dir)
  dir = undefined
})

function tree(files: Record<string, string>): string {
  dir = tempDir('check-deps')
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true })
    writeFileSync(join(dir, path), text)
  }
  return dir
}

describe('check-deps', () => {
  test('src/ follows the layer order and has no folder cycles', () => {
    const r = check()
    expect(r.err).toBe('')
    expect(r.out).toMatch(
      /^check-deps: src\/ imports follow the layer order \(\d+ cross-folder imports, no cycles\)$/m
    )
    expect(r.status).toBe(0)
  })

  test('a tree that follows the order passes (imports down, within a folder, type-only, multi-line)', () => {
    const src = tree({
      'core/errors.ts': 'export class E extends Error {}\n',
      'config/load.ts':
        "import type {\n  E\n} from '../core/errors.js'\nimport { x } from './rules.js'\nexport { x }\nexport type F = E\n",
      'config/rules.ts': 'export const x = 1\n',
      'platform/github.ts':
        "import * as core from '@actions/core'\nexport const a = core && process.env.GITHUB_SHA\n"
    })
    const r = check(src)
    expect(r.err).toBe('')
    expect(r.status).toBe(0)
  })

  test('an import up the order fails and names the file, the import and the two folders', () => {
    const src = tree({
      'core/errors.ts': "import { load } from '../config/load.js'\nexport const e = load\n",
      'config/load.ts': 'export const load = 1\n'
    })
    const r = check(src)
    expect(r.status).toBe(1)
    expect(r.err).toContain(
      "core/errors.ts: imports '../config/load.js': core/ may not depend on config/ (layer order)"
    )
  })

  test('a cycle between folders fails, even through `import type` and `export ... from` over several lines', () => {
    const src = tree({
      'host/context.ts':
        "import type {\n  Tracker\n} from '../pipeline/progress.js'\nexport type T = Tracker\n",
      'pipeline/progress.ts': "export {\n  runOn\n} from '../host/context.js'\nexport type Tracker = number\n"
    })
    const r = check(src)
    expect(r.status).toBe(1)
    expect(r.err).toContain('cycle between folders: host <-> pipeline')
    expect(r.err).toContain(
      "host/context.ts: imports '../pipeline/progress.js': host/ may not depend on pipeline/"
    )
    expect(r.err).toMatch(/check-deps: 1 folder cycle\(s\), 1 import\(s\) against the layer order/)
  })

  test('a folder the order does not name fails', () => {
    const r = check(tree({ 'gadgets/a.ts': "import { e } from '../core/errors.js'\n", 'core/errors.ts': '' }))
    expect(r.status).toBe(1)
    expect(r.err).toContain('gadgets/a.ts: folder src/gadgets/ is not in the layer order')
  })

  test('only platform/ may import @actions/* or read GitHub and GitLab variables', () => {
    const src = tree({
      'engine/lifecycle.ts': "import * as core from '@actions/core'\nexport const c = core\n",
      'host/context.ts': 'export const who = process.env.GITLAB_USER_LOGIN\n'
    })
    const r = check(src)
    expect(r.status).toBe(1)
    expect(r.err).toContain(
      "engine/lifecycle.ts: imports '@actions/core': only platform, ./ may import @actions/*"
    )
    expect(r.err).toContain(
      'host/context.ts: names GITLAB_USER_LOGIN: only platform, ./ may know GitHub or GitLab'
    )
  })
})
