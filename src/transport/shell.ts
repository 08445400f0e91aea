/**
 * Which shell runs a command on the runner, per platform; pure (the platform, the environment and a file
 * test are arguments), used by the local transport (local.ts).
 *  - `posix`: the product's own POSIX sh scripts (the local transport's host side, copying trees). `/bin/sh`
 *    on POSIX; on Windows the `sh.exe` of Git for Windows (PATH, else its usual install dirs), with
 *    `MSYS=winsymlinks:nativestrict` so that `ln -s` makes real symlinks or fails, never copies.
 *  - `platform`: the user's commands (stages.test, stages.build_local), as node's `shell: true` runs them:
 *    `/bin/sh -c` on POSIX, `%ComSpec% /d /s /c` (cmd.exe) on Windows.
 * Stopping: POSIX kills the process group (the child leads its own); Windows has none, so
 * `taskkill /pid N /T /F` ends the tree.
 */
import { posix, win32 } from 'node:path'

export type ShellKind = 'posix' | 'platform'

export interface ShellChoice {
  file: string
  args: string[]
  /** Variables added to the environment. */
  env: Record<string, string>
  /** Pass `args` as they are (cmd.exe parses its own command line). */
  verbatim: boolean
  /** How to stop the command and all it started. */
  kill: 'group' | 'taskkill'
}

/** What to tell a Windows user whose runner has no POSIX sh. */
export const NO_SH_ON_WINDOWS =
  'no POSIX sh found on this Windows machine (the local transport and runner-side copies run POSIX sh scripts): install Git for Windows (https://gitforwindows.org), which ships sh.exe, or put its bin dir on PATH'

/** Where Git for Windows puts sh.exe when it is not on PATH. */
function gitForWindowsSh(env: NodeJS.ProcessEnv): string[] {
  const roots = [
    env.ProgramFiles,
    env['ProgramFiles(x86)'],
    env.LOCALAPPDATA && win32.join(env.LOCALAPPDATA, 'Programs')
  ]
  return roots.filter((r): r is string => !!r).map(r => win32.join(r, 'Git', 'bin', 'sh.exe'))
}

/** `sh.exe` on the Windows PATH (`Path` is how Windows spells it), else in Git for Windows' install dirs. */
export function findWindowsSh(env: NodeJS.ProcessEnv, exists: (file: string) => boolean): string | undefined {
  const path = env.PATH ?? env.Path ?? ''
  const onPath = path
    .split(';')
    .filter(Boolean)
    .map(d => win32.join(d, 'sh.exe'))
  return [...onPath, ...gitForWindowsSh(env)].find(exists)
}

/**
 * The shell for `command` on `platform`; undefined when Windows has no sh for a `posix` command (say
 * NO_SH_ON_WINDOWS).
 */
export function shellFor(
  kind: ShellKind,
  command: string,
  platform: NodeJS.Platform,
  env: NodeJS.ProcessEnv,
  exists: (file: string) => boolean
): ShellChoice | undefined {
  if (platform !== 'win32')
    return {
      file: posix.join('/', 'bin', 'sh'),
      args: ['-c', command],
      env: {},
      verbatim: false,
      kill: 'group'
    }
  if (kind === 'platform') {
    // node's own `shell: true` on Windows
    const file = env.ComSpec || env.COMSPEC || 'cmd.exe'
    return { file, args: ['/d', '/s', '/c', `"${command}"`], env: {}, verbatim: true, kill: 'taskkill' }
  }
  const sh = findWindowsSh(env, exists)
  if (!sh) return undefined
  const msys = [env.MSYS, 'winsymlinks:nativestrict'].filter(Boolean).join(' ')
  return { file: sh, args: ['-c', command], env: { MSYS: msys }, verbatim: false, kill: 'taskkill' }
}
