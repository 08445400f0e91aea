/**
 * Runs generated scripts the way hosts run them: the script goes to the stdin of REMOTE_SHELL
 * (`sh -c 'eval "$(cat)"'`), itself started by /bin/sh -c, as sshd does with the command it is sent.
 * Asynchronous on purpose: tests that start an HTTP server in this process must keep the event loop free.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, realpathSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REMOTE_SHELL } from '../../../src/commands/command.js'

export interface ShellResult {
  code: number | null
  stdout: string
  stderr: string
}

export interface RunOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  input?: string | Buffer
}

/** Runs `file args...` with `input` on stdin and collects its output. */
export function run(file: string, args: string[], opts: RunOptions = {}): Promise<ShellResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: 'pipe' })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
    child.on('error', reject)
    child.on('close', code => resolve({ code, stdout, stderr }))
    child.stdin.on('error', () => undefined)
    child.stdin.end(opts.input ?? '')
  })
}

/** A script run exactly as on a host: `/bin/sh -c "sh -c 'eval \"$(cat)\"'"` with the script on stdin. */
export function runRemote(script: string, opts: Omit<RunOptions, 'input'> = {}): Promise<ShellResult> {
  return run('/bin/sh', ['-c', REMOTE_SHELL], { ...opts, input: script })
}

/** The same, with a given shell binary in place of `sh`: `<shell> -c 'eval "$(cat)"'`. */
export function runEvalIn(
  shell: string,
  script: string,
  opts: Omit<RunOptions, 'input'> = {}
): Promise<ShellResult> {
  return run(shell, ['-c', 'eval "$(cat)"'], { ...opts, input: script })
}

/** /bin/sh always; bash and dash where they are installed (by absolute path). */
export function shells(): string[] {
  const found = ['/bin/sh']
  for (const name of ['bash', 'dash']) {
    const r = spawnSync('/bin/sh', ['-c', `command -v ${name}`], { encoding: 'utf8' })
    const path = r.stdout.trim()
    if (r.status === 0 && path.startsWith('/') && existsSync(path)) found.push(path)
  }
  return found
}

/** A fresh temp dir (real path, so symlink targets compare equal); remove it with `cleanup`. */
export function tempDir(prefix: string): string {
  return realpathSync(mkdtempSync(join(tmpdir(), `${prefix}-`)))
}

export function cleanup(dir: string | undefined): void {
  if (dir) rmSync(dir, { recursive: true, force: true })
}

/** Values no script may ever run, each a way of smuggling code into a shell word. `marker` is a file path. */
export function hostileValues(marker: string): string[] {
  return [
    "a'b",
    "'",
    "''",
    `it's "quoted" 'twice'`,
    `$(touch ${marker})`,
    `\`touch ${marker}\``,
    `; touch ${marker}`,
    `x; rm -rf x`,
    `&& touch ${marker} || touch ${marker}`,
    `| touch ${marker}`,
    `> ${marker}`,
    `line one\nline two\ntouch ${marker}\n`,
    '\n',
    'a b  c',
    '\ttab',
    '*',
    '.*',
    '~',
    '~root',
    '-n',
    '-e x',
    '--',
    '$HOME ${HOME} $1 $@ $$',
    '\\',
    'back\\slash\\n',
    '%s %d %%',
    '!event',
    'é ünïcödé 日本語 🚀',
    '',
    `"; touch ${marker}; echo "`,
    `'; touch ${marker}; echo '`,
    `$(IFS=_; touch${'_'}${marker})`,
    '#comment',
    '{a,b}',
    '[abc]',
    'a=b',
    '\r\n'
  ]
}
