/**
 * A compose stack whose rollback must run the previous release's image, on a real container engine:
 * podman with podman-compose under runc (harness/podman.ts maps the `docker` / `docker compose` CLI onto
 * them; the images are FROM scratch + busybox httpd). Each release's image is its own,
 * `ledger-web:${SAFE_DEPLOY_RELEASE}`, so `up -d --no-deps web` in a release dir starts that release's
 * code, and stages.prune removes the image with the release it belongs to.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { join } from 'node:path'
import { startSshd, stopAll, tempDir, type SshHost } from './harness/sshd.js'
import { containerEngine, writeComposeApp, type Engine } from './harness/podman.js'
import { answer, currentOf, historyOf, project, releasesOf, type Project } from './support.js'

let host: SshHost
let engine: Engine
const projects: string[] = []

beforeAll(async () => {
  host = await startSshd()
  engine = containerEngine(tempDir('sd-engine-'))
})

afterAll(async () => {
  for (const name of projects) engine.clean(name, `${name}-web:`)
  await stopAll()
})

async function composeProject(name: string, keep = 5): Promise<Project> {
  projects.push(name)
  engine.clean(name, `${name}-web:`)
  return project({
    hosts: [host],
    root: host.root(name),
    config: c => ({
      ...c,
      keep_releases: keep,
      source: { dir: './app', exclude: ['.git'] },
      env: {
        PORT: (c.env as { PORT: string }).PORT,
        COMPOSE_PROJECT_NAME: name,
        PATH: `${engine.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`
      },
      stages: {
        build: 'docker compose build web',
        // podman-compose 1.0.3 recreates a container only when told to; docker compose recreates it
        // whenever the image changes, which a per-release tag always does
        restart: 'docker compose up -d --no-deps --force-recreate web',
        prune: `docker image rm "${name}-web:$SAFE_DEPLOY_RELEASE"`
      },
      verify: {
        http: {
          url: `http://127.0.0.1:${(c.env as { PORT: string }).PORT}/health`,
          retries: 20,
          interval: '500ms'
        }
      }
    })
  })
}

const app = (p: Project, name: string, body: string, healthy = true) =>
  writeComposeApp(join(p.dir, 'app'), { image: `${name}-web`, body, healthy })

describe('compose: each release runs its own image', () => {
  test('a broken v2 is rolled back automatically: the container runs v1 image and serves v1 code', async () => {
    const name = 'shopa'
    const p = await composeProject(name)
    const root = host.root(name)
    app(p, name, 'code v1')
    const r1 = await p.deploy()
    expect(r1.code).toBe(0)
    const [v1] = releasesOf(root) as [string]
    expect(await answer(p.port)).toBe('code v1')
    expect(engine.running(name)).toEqual({ web: `${name}-web:${v1}` })

    app(p, name, 'code v2', false)
    const r2 = await p.deploy()
    expect(r2.stderr).toContain('ROLLED BACK')
    expect(r2.code).toBe(4)
    const v2 = releasesOf(root).find(r => r !== v1) as string
    expect(currentOf(root)).toBe(`releases/${v1}`)
    // the container was recreated from v1's image, not from the image v2 built last
    expect(engine.running(name)).toEqual({ web: `${name}-web:${v1}` })
    expect(await answer(p.port)).toBe('code v1')
    // v2's release dir is kept for inspection (marked bad), and so is the image it built
    expect(releasesOf(root)).toEqual([v1, v2].sort())
    expect(engine.images(`${name}-web:`)).toEqual([`${name}-web:${v1}`, `${name}-web:${v2}`].sort())
    expect(historyOf(root).find(h => h.release === v2)?.bad).toBe(true)
  })

  test('a manual rollback after two good deploys runs the older image; pruning removes only pruned releases images', async () => {
    const name = 'shopb'
    const p = await composeProject(name, 2)
    const root = host.root(name)
    app(p, name, 'code v1')
    expect((await p.deploy()).code).toBe(0)
    app(p, name, 'code v2')
    expect((await p.deploy()).code).toBe(0)
    const [v1, v2] = releasesOf(root) as [string, string]
    expect(await answer(p.port)).toBe('code v2')
    expect(engine.running(name)).toEqual({ web: `${name}-web:${v2}` })

    const rb = await p.run(['rollback'])
    expect(rb.code).toBe(0)
    expect(currentOf(root)).toBe(`releases/${v1}`)
    expect(engine.running(name)).toEqual({ web: `${name}-web:${v1}` })
    expect(await answer(p.port)).toBe('code v1')

    // keep_releases 2: v3 prunes v2, v4 prunes v1 (current and previous always stay)
    app(p, name, 'code v3')
    expect((await p.deploy()).code).toBe(0)
    app(p, name, 'code v4')
    expect((await p.deploy()).code).toBe(0)
    const kept = releasesOf(root)
    expect(kept).toHaveLength(2)
    expect(kept).not.toContain(v1)
    expect(kept).not.toContain(v2)
    // the images of exactly the kept releases remain
    expect(engine.images(`${name}-web:`)).toEqual(kept.map(r => `${name}-web:${r}`).sort())
    expect(await answer(p.port)).toBe('code v4')
  })
})
