/**
 * A real container engine for the compose tests: podman (Debian's), running containers under runc. What
 * this machine needs to run them is in a containers.conf of our own (CONTAINERS_CONF): explicit ulimits (the
 * default nofile limit is above what the sandbox allows, and runc fails with "error setting rlimits"),
 * cgroupfs and a file events log (no systemd). A `docker` first on PATH maps the docker CLI onto it:
 * `docker compose ...` is `podman-compose -p $COMPOSE_PROJECT_NAME ...` (podman-compose 1.0.3 does not read
 * COMPOSE_PROJECT_NAME itself), anything else is `podman ...`. Images are built `FROM scratch` with the
 * static busybox: no registry is reachable.
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface Engine {
  /** Directory to put first on PATH (holds `docker`). */
  bin: string
  /** The environment every podman call needs (CONTAINERS_CONF). */
  env: Record<string, string>
  /** Runs podman with the test's settings; returns stdout. */
  podman(args: string[]): string
  /** The image (repository:tag) of each running container of a compose project, by service. */
  running(project: string): Record<string, string>
  /** repository:tag of every image whose repository starts with `prefix`. */
  images(prefix: string): string[]
  /** Removes the project's containers, its network and the images under `prefix`. */
  clean(project: string, prefix: string): void
}

export function containerEngine(dir: string): Engine {
  const bin = join(dir, 'engine-bin')
  mkdirSync(bin, { recursive: true })
  const conf = join(dir, 'containers.conf')
  writeFileSync(
    conf,
    `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4000:4000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
`
  )
  writeFileSync(
    join(bin, 'docker'),
    `#!/bin/sh
export CONTAINERS_CONF='${conf}'
if [ "$1" = compose ]; then
  shift
  exec podman-compose -p "\${COMPOSE_PROJECT_NAME:?docker compose needs COMPOSE_PROJECT_NAME here}" "$@"
fi
exec podman "$@"
`
  )
  chmodSync(join(bin, 'docker'), 0o755)
  const env = { CONTAINERS_CONF: conf }
  const podman = (args: string[]) =>
    execFileSync('podman', args, { env: { ...process.env, ...env }, encoding: 'utf8' })
  const engine: Engine = {
    bin,
    env,
    podman,
    running(project) {
      const out = podman([
        'ps',
        '--filter',
        `label=com.docker.compose.project=${project}`,
        '--format',
        '{{.Labels}}\t{{.Image}}'
      ])
      const services: Record<string, string> = {}
      for (const line of out.split('\n').filter(Boolean)) {
        const service = /com\.docker\.compose\.service:([^ \]]+)/.exec(line)?.[1]
        if (service) services[service] = (line.split('\t')[1] ?? '').replace(/^localhost\//, '')
      }
      return services
    },
    images(prefix) {
      return podman(['images', '--format', '{{.Repository}}:{{.Tag}}'])
        .split('\n')
        .map(l => l.replace(/^localhost\//, ''))
        .filter(l => l.startsWith(prefix))
        .sort()
    },
    clean(project, prefix) {
      const ids = podman(['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`])
        .split('\n')
        .filter(Boolean)
      if (ids.length) podman(['rm', '-f', '-t', '0', ...ids])
      const images = engine.images(prefix)
      if (images.length) podman(['rmi', '-f', ...images])
      // the network podman-compose made for the project
      if (podman(['network', 'ls', '--format', '{{.Name}}']).split('\n').includes(`${project}_default`))
        podman(['network', 'rm', '-f', `${project}_default`])
    }
  }
  return engine
}

/**
 * A compose app in `src`: one service `web` whose image is `<image>:${SAFE_DEPLOY_RELEASE}`, built FROM
 * scratch with busybox httpd serving `body` at / and, when `healthy`, `ok` at /health, on ${PORT}.
 */
export function writeComposeApp(src: string, opts: { image: string; body: string; healthy: boolean }): void {
  mkdirSync(join(src, 'www'), { recursive: true })
  copyFileSync('/bin/busybox', join(src, 'busybox'))
  chmodSync(join(src, 'busybox'), 0o755)
  writeFileSync(join(src, 'www', 'index.html'), `${opts.body}\n`)
  if (opts.healthy) writeFileSync(join(src, 'www', 'health'), 'ok\n')
  else rmSync(join(src, 'www', 'health'), { force: true })
  writeFileSync(
    join(src, 'Containerfile'),
    `FROM scratch
COPY busybox /bin/busybox
COPY www /www
CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
`
  )
  writeFileSync(
    join(src, 'docker-compose.yml'),
    `services:
  web:
    image: ${opts.image}:\${SAFE_DEPLOY_RELEASE}
    build: .
    ports: ["127.0.0.1:\${PORT}:8080"]
`
  )
}
