import { sh } from '../commands/quote.js'
import { script, type RemoteCommand } from '../commands/command.js'
import { IDENTITY_ENV, PASSWORD_ENV, type BackupPlan } from '../backup-engines/plan.js'
import {
  artifactFile,
  keepFile,
  manifestFile,
  metaFile,
  signatureFile,
  type Artifact,
  type BackupName
} from '../backup-engines/name.js'
import {
  AGE_HEADER,
  compressCommand,
  decompressCommand,
  decryptCommand,
  encryptCommand
} from '../backup-engines/compress.js'
import { runIn, type Target, type Tools } from '../backup-engines/target.js'
import { engineOf, formatOf } from '../backup-engines/index.js'
import { WORK_VAR, type Step } from '../backup-engines/engine.js'
import { filesDump, filesExtract, filesSwap } from '../backup-engines/files.js'

/**
 * The scripts that run on the host for backups. Each is POSIX sh (dash is /bin/sh on Debian, and dash
 * has no `set -o pipefail`), so every pipeline records the exit status of each of its commands in a file
 * (`{ ( cmd ) 2>"$t/s1.err"; echo $? >"$t/s1.rc"; } | ...`) and `sd_ok` fails when any is not 0. That
 * works the same in dash, bash, ash and ksh. Scripts print KEY=value lines that ops/*.ts read (parseKeyValues).
 */

export type { Step }

/** A script, plus what each step id means (RC=s3 1 -> the label of s3). */
export interface BuiltCommand extends RemoteCommand {
  steps: Record<string, string>
}

export class StepIds {
  private n = 0
  readonly labels: Record<string, string> = {}
  add(label: string): string {
    const id = `s${++this.n}`
    this.labels[id] = label
    return id
  }
}

/** Prints RC=<id> <status> for each failed step and ERR=<id> <line> for what each step said on stderr. */
const SD_OK = [
  'sd_ok() {',
  '  sd_r=0',
  '  for sd_i in "$@"; do',
  '    sd_c=$(cat "$t/$sd_i.rc" 2>/dev/null) || sd_c=',
  '    [ -n "$sd_c" ] || sd_c=none',
  '    [ "$sd_c" = 0 ] || { sd_r=1; printf \'RC=%s %s\\n\' "$sd_i" "$sd_c"; }',
  '    [ -s "$t/$sd_i.err" ] && tail -n 20 "$t/$sd_i.err" | sed "s/^/ERR=$sd_i /"',
  '  done',
  '  [ $sd_r = 0 ] || printf \'FREE_KB=%s\\n\' "$(df -Pk "$dir" 2>/dev/null | awk \'NR==2 {print $4}\')"',
  '  return $sd_r',
  '}'
]

/**
 * Two temp dirs: `$t` (mktemp -d, private) for exit statuses, stderr, FIFOs and the identity, so they
 * can be written even when the backup disk is full; `$w`, next to where the data goes, for the data.
 */
const WORK_DIRS = (dataDir: string) => [
  't=',
  'w=',
  `trap 'rm -rf "$t" "$w"' EXIT`,
  "trap 'exit 129' HUP",
  "trap 'exit 130' INT",
  "trap 'exit 143' TERM",
  `t=$(mktemp -d) || ${fail("'cannot create a temporary directory (mktemp -d)'")}`,
  `w=$(mktemp -d ${dataDir}) || ${fail(`"cannot create a temporary directory in $(dirname ${dataDir})"`)}`
]

const fail = (message: string) => `{ printf 'FAIL=%s\\n' ${message}; exit 1; }`

/**
 * `{ ( a ) 2>"$t/s1.err" <from; echo $? >"$t/s1.rc"; } | { ( b ) ...; } >to`, and the ids of its steps.
 * `from`/`to` are shell words (already quoted).
 */
export function pipeline(ids: StepIds, steps: Step[], io: { from?: string; to?: string } = {}) {
  const used: string[] = []
  const parts = steps.map((s, i) => {
    const id = ids.add(s.label)
    used.push(id)
    const input = i === 0 && io.from ? ` <${io.from}` : ''
    return `{ ( ${s.cmd} ) 2>"$t/${id}.err"${input}; echo $? >"$t/${id}.rc"; }`
  })
  return { text: `${parts.join(' | ')}${io.to ? ` >${io.to}` : ''}`, ids: used }
}

/** Takes each password out of the environment into a plain shell variable that children do not inherit. */
function captureSecrets(plan: BackupPlan, targets: Target[], identity: boolean): string[] {
  const lines: string[] = []
  for (const t of targets) {
    if (!t.passwordVar) continue
    lines.push(`${t.passwordVar}=\${${PASSWORD_ENV(t.index)}-}`, `unset ${PASSWORD_ENV(t.index)}`)
  }
  if (identity) lines.push(`sd_identity=\${${IDENTITY_ENV}-}`, `unset ${IDENTITY_ENV}`)
  else if (plan.hasIdentity) lines.push(`unset ${IDENTITY_ENV}`)
  return lines
}

/** The identity, written to a 0600 file in the work dir (umask 077) by printf, a shell builtin: no argv. */
const WRITE_IDENTITY = [
  `[ -n "$sd_identity" ] || ${fail("'the age identity is empty'")}`,
  `printf '%s\\n' "$sd_identity" >"$t/identity" || ${fail("'cannot write the age identity to a temporary file'")}`,
  'sd_identity='
]

/** A command's env: the config's env, the passwords of these targets only, and the identity if used. */
function secretEnv(plan: BackupPlan, targets: Target[], identity: boolean): Record<string, string> {
  const env: Record<string, string> = { ...plan.env }
  for (const t of targets) {
    const v = plan.secretEnv[PASSWORD_ENV(t.index)]
    if (t.passwordVar && v !== undefined) env[PASSWORD_ENV(t.index)] = v
  }
  const id = plan.secretEnv[IDENTITY_ENV]
  if (identity && id !== undefined) env[IDENTITY_ENV] = id
  return env
}

/** The artifact a target (or the files) produces in a backup of this plan. */
export function artifactsOf(plan: BackupPlan, name: BackupName): { artifact: Artifact; target?: Target }[] {
  const encrypted = plan.recipients.length > 0
  const out: { artifact: Artifact; target?: Target }[] = plan.targets.map(t => {
    const a = { kind: t.engine, label: t.fileLabel, compress: t.compress, encrypted }
    return { artifact: { ...a, file: artifactFile(name, a) }, target: t }
  })
  if (plan.files.length) {
    const a = { kind: 'files' as const, compress: plan.filesCompress, encrypted }
    out.push({ artifact: { ...a, file: artifactFile(name, a) } })
  }
  return out
}

function dumpStep(plan: BackupPlan, t: Target | undefined, tools: Tools | undefined): Step {
  if (!t) return { label: 'tar (files)', cmd: filesDump(plan.root, plan.files) }
  const engine = engineOf(t.engine)
  return engine.dump(t, tools ?? engine.defaultTools)
}

/** Steps that read the artifact's plain (decrypted) bytes on stdin and fail when it is not whole. */
function checkSteps(a: Artifact, t: Target | undefined, scratch: string): Step[] {
  const steps: Step[] = []
  const dec = decompressCommand(a.compress)
  if (dec) steps.push({ label: `${dec.split(' ')[0]} -d (${a.file})`, cmd: dec })
  steps.push(formatOf(a.kind).check(t, a.file, scratch))
  return steps
}

/** Prints the tables an artifact holds: `TABLE=<file> <name>`, from the scratch files of its check. */
function tableLines(a: Artifact, scratch: string): string | undefined {
  return formatOf(a.kind).tables?.(a.file, scratch)
}

export interface BackupScriptInput {
  plan: BackupPlan
  name: BackupName
  /** Per target index: the mysql programs the probe found. */
  tools?: Record<number, Tools>
  /** Written as NAME.meta.json. */
  meta: object
  /** Publish NAME.keep too: retention never prunes this backup (`backup --keep`). */
  keep?: string
}

/**
 * Makes a backup: every artifact streams `dump | compress | [tee to a verifier] | [age] > file` into a
 * private temp dir inside the backup dir (umask 077: never readable by others), is verified, checksummed
 * in NAME.sha256 (sha256sum format), synced, and only then renamed into place, the manifest last: a
 * backup exists when its manifest does. Any failure prints FAIL or RC lines and leaves nothing behind.
 * Encrypted artifacts are verified on their plain stream, before encryption, by a reader on a FIFO, so a
 * backup is verified without the identity; with the identity the file is also decrypted and verified.
 * Exit 17 (and EXISTS=) when a backup of that name exists already.
 */
export function backupScript(input: BackupScriptInput): BuiltCommand & { artifacts: Artifact[] } {
  const { plan, name } = input
  const ids = new StepIds()
  const arts = artifactsOf(plan, name)
  const encrypted = plan.recipients.length > 0
  const decryptCheck = encrypted && plan.hasIdentity
  const lines: string[] = [
    'set -u',
    'umask 077',
    ...captureSecrets(plan, plan.targets, decryptCheck),
    `dir=${sh(plan.dir)}`,
    `name=${sh(name)}`,
    `mkdir -p "$dir" || ${fail('"cannot create the backup directory $dir"')}`,
    `for f in "$dir/$name".*; do [ -e "$f" ] && { printf 'EXISTS=%s\\n' "$f"; exit 17; }; done`,
    ...WORK_DIRS('"$dir/.partial.$name.XXXXXX"'),
    ...SD_OK,
    ...(decryptCheck ? WRITE_IDENTITY : [])
  ]
  arts.forEach(({ artifact: a, target: t }, i) => {
    const out = `"$w/${a.file}"`
    const scratch = `$t/a${i}`
    const dump: Step[] = [dumpStep(plan, t, t ? input.tools?.[t.index] : undefined)]
    const comp = compressCommand(a.compress)
    if (comp) dump.push({ label: `${comp.split(' ')[0]} (${a.file})`, cmd: comp })
    lines.push(`# ${a.file}`)
    if (encrypted) {
      // the verifier reads the plain stream from a FIFO while age encrypts it
      const check = pipeline(ids, checkSteps(a, t, scratch))
      dump.push({ label: `tee to the verifier (${a.file})`, cmd: `tee "${scratch}.fifo"` })
      dump.push({ label: `age encryption (${a.file})`, cmd: encryptCommand(plan.recipients) })
      const d = pipeline(ids, dump, { from: '/dev/null', to: out })
      lines.push(
        `mkfifo "${scratch}.fifo" || ${fail('"cannot create a FIFO in $t"')}`,
        `{ ${check.text}; } <"${scratch}.fifo" &`,
        'sd_v=$!',
        d.text,
        'wait "$sd_v"',
        `sd_ok ${d.ids.join(' ')} || exit 1`,
        `sd_ok ${check.ids.join(' ')} || exit 1`,
        `[ "$(head -c ${AGE_HEADER.length} ${out})" = ${AGE_HEADER} ] || ${fail(sh(`${a.file} is not an age file`))}`
      )
      if (decryptCheck) {
        const c = pipeline(
          ids,
          [
            { label: `age decryption (${a.file})`, cmd: decryptCommand('$t/identity') },
            ...checkSteps(a, t, scratch)
          ],
          { from: out }
        )
        lines.push(c.text, `sd_ok ${c.ids.join(' ')} || exit 1`)
      }
    } else {
      const d = pipeline(ids, dump, { from: '/dev/null', to: out })
      lines.push(
        d.text,
        `sd_ok ${d.ids.join(' ')} || exit 1`,
        `[ -s ${out} ] || ${fail(sh(`${a.file}: the dump is empty`))}`
      )
      const c = pipeline(ids, checkSteps(a, t, scratch), { from: out })
      lines.push(c.text, `sd_ok ${c.ids.join(' ')} || exit 1`)
    }
  })
  const files = arts.map(a => a.artifact.file)
  const meta = metaFile(name)
  const manifest = manifestFile(name)
  const keep = keepFile(name)
  const published = [...files, meta, ...(input.keep ? [keep] : []), manifest]
  lines.push(
    `printf '%s\\n' ${sh(JSON.stringify(input.meta))} >"$w/${meta}" || ${fail(sh(`cannot write ${meta}`))}`,
    ...(input.keep
      ? [`printf '%s\\n' ${sh(input.keep)} >"$w/${keep}" || ${fail(sh(`cannot write ${keep}`))}`]
      : []),
    `(cd "$w" && sha256sum -- ${files.map(sh).join(' ')} >${sh(manifest)}) || ${fail(sh(`cannot write ${manifest}`))}`,
    `chmod 600 ${published.map(f => `"$w/${f}"`).join(' ')} || ${fail("'chmod 600 failed'")}`,
    `sync -- ${published.map(f => `"$w/${f}"`).join(' ')} 2>/dev/null || true`,
    // with backup.sign_key the runner signs these exact bytes (the key never comes here)
    ...(plan.signKey
      ? [hexLine('SIGN_MANIFEST', `"$w/${manifest}"`), hexLine('SIGN_META', `"$w/${meta}"`)]
      : []),
    ...published.map(f => `mv -f "$w/${f}" "$dir/${f}" || ${fail(sh(`cannot move ${f} into place`))}`),
    `for f in ${published.map(sh).join(' ')}; do printf 'FILE=%s %s\\n' "$(stat -c %s "$dir/$f")" "$f"; done`,
    'echo DONE=1'
  )
  return {
    label: `back up to ${plan.dir}/${name}`,
    script: script(...lines),
    env: secretEnv(plan, plan.targets, decryptCheck),
    steps: ids.labels,
    artifacts: arts.map(a => a.artifact)
  }
}

/** `KEY=<the file's bytes in hex>`, by od (POSIX) rather than base64 (not everywhere). */
const hexLine = (key: string, file: string) =>
  `printf '${key}=%s\\n' "$(od -An -v -tx1 ${file} | tr -d ' \\n')"`

/**
 * For the signature check (`backup.sign_key`): prints the manifest and meta file as hex
 * (SIGN_MANIFEST=, SIGN_META=) and the first line of NAME.sig (SIG=), each when it exists.
 */
export function readSignedScript(plan: BackupPlan, name: BackupName): RemoteCommand {
  const [manifest, meta, sig] = [sh(manifestFile(name)), sh(metaFile(name)), sh(signatureFile(name))]
  return {
    label: `read the signature of backup ${name}`,
    script: script(
      `cd ${sh(plan.dir)} 2>/dev/null || ${fail(sh(`the backup directory ${plan.dir} does not exist`))}`,
      `[ -f ${manifest} ] || ${fail(sh(`${manifestFile(name)} is missing: the backup is incomplete`))}`,
      hexLine('SIGN_MANIFEST', manifest),
      `[ -f ${meta} ] && ${hexLine('SIGN_META', meta)}`,
      `[ -f ${sig} ] && printf 'SIG=%s\\n' "$(head -n 1 ${sig})"`,
      'true'
    )
  }
}

/** Writes NAME.sig (not a secret: an HMAC) next to a published backup. */
export function writeSignatureScript(plan: BackupPlan, name: BackupName, line: string): RemoteCommand {
  const sig = signatureFile(name)
  return {
    label: `sign backup ${name}`,
    script: script(
      'umask 077',
      `cd ${sh(plan.dir)} || exit 1`,
      `printf '%s\\n' ${sh(line)} >${sh(`.${sig}.tmp`)} || ${fail(sh(`cannot write ${sig}`))}`,
      `mv -f -- ${sh(`.${sig}.tmp`)} ${sh(sig)} || ${fail(sh(`cannot move ${sig} into place`))}`,
      'echo SIGNED=1'
    )
  }
}

/** Which configured database an artifact belongs to: its label, or the only database of that engine. */
export function targetFor(plan: BackupPlan, a: Artifact): Target | undefined {
  if (a.kind === 'files') return undefined
  if (a.label) return plan.targets.find(t => t.engine === a.kind && t.label === a.label)
  const same = plan.targets.filter(t => t.engine === a.kind)
  return same.length === 1 ? same[0] : undefined
}

/**
 * Verifies a published backup: `sha256sum -c` of its manifest (catches a flipped or missing byte), then
 * each artifact as at creation, decrypting on the fly when the identity is configured. Without it an
 * encrypted artifact is checked by manifest and age header only, and the script says so (UNCHECKED=).
 * Prints MANIFEST= lines (the manifest), OK=/UNCHECKED= per artifact and TABLE= lines.
 */
export function verifyScript(
  plan: BackupPlan,
  name: BackupName,
  artifacts: Artifact[],
  opts: { manifestSha256?: string } = {}
): BuiltCommand {
  const ids = new StepIds()
  const identity = plan.hasIdentity && artifacts.some(a => a.encrypted)
  const targets = artifacts.map(a => targetFor(plan, a)).filter((t): t is Target => !!t)
  const manifest = manifestFile(name)
  const m = opts.manifestSha256 ? '"$t/manifest"' : sh(manifest)
  const lines: string[] = [
    'set -u',
    'umask 077',
    ...captureSecrets(plan, [], identity),
    `dir=${sh(plan.dir)}`,
    `cd "$dir" 2>/dev/null || ${fail('"the backup directory $dir does not exist"')}`,
    `[ -f ${sh(manifest)} ] || ${fail(sh(`${manifest} is missing: the backup is incomplete`))}`,
    ...WORK_DIRS(`"$dir/.verify.${plan.app}.XXXXXX"`),
    ...SD_OK,
    ...(identity ? WRITE_IDENTITY : []),
    // a signed manifest: check a private copy that is the one whose signature the runner checked
    ...(opts.manifestSha256
      ? [
          `cp -- ${sh(manifest)} "$t/manifest" || ${fail(sh(`cannot copy ${manifest}`))}`,
          `[ "$(sha256sum <"$t/manifest" | cut -c1-64)" = ${sh(opts.manifestSha256)} ] || ${fail(sh(`${manifest} changed after its signature was checked`))}`
        ]
      : []),
    `sed 's/^/MANIFEST=/' ${m}`,
    `if ! sha256sum -c --strict ${m} >"$t/sum" 2>&1; then`,
    `  grep -v ': OK$' "$t/sum" | head -n 20 | sed 's/^/SUM=/'`,
    `  ${fail(sh(`the files do not match their checksums in ${manifest}`))}`,
    'fi'
  ]
  artifacts.forEach((a, i) => {
    const t = targetFor(plan, a)
    const scratch = `$t/a${i}`
    const file = sh(a.file)
    if (a.encrypted && !identity) {
      lines.push(
        `[ "$(head -c ${AGE_HEADER.length} ${file})" = ${AGE_HEADER} ] || ${fail(sh(`${a.file} is not an age file`))}`,
        `printf 'UNCHECKED=%s\\n' ${file}`
      )
      return
    }
    const steps = checkSteps(a, t, scratch)
    if (a.encrypted)
      steps.unshift({ label: `age decryption (${a.file})`, cmd: decryptCommand('$t/identity') })
    const c = pipeline(ids, steps, { from: file })
    lines.push(c.text, `sd_ok ${c.ids.join(' ')} || exit 1`)
    const tables = tableLines(a, scratch)
    if (tables) lines.push(tables)
    lines.push(`printf 'OK=%s\\n' ${file}`)
  })
  lines.push('echo DONE=1')
  return {
    label: `verify backup ${name}`,
    script: script(...lines),
    env: secretEnv(plan, targets, identity),
    steps: ids.labels
  }
}

/**
 * Restores one artifact over the live database (or files). Databases: `[age -d |] [decompress |] restore`;
 * SQLite and files are first unpacked to a work dir under .safe-deploy and put in place only once the
 * whole stream was read without error. Prints RESTORED= and, for PostgreSQL and MySQL, DBTABLE= lines:
 * the tables the database has now (those the backup lacks were left as they were).
 */
export function restoreScript(
  plan: BackupPlan,
  layoutMeta: string,
  a: Artifact,
  target: Target | undefined,
  tools?: Tools
): BuiltCommand {
  const ids = new StepIds()
  const identity = a.encrypted
  const from = `"$dir/${a.file}"`
  const head: Step[] = []
  if (a.encrypted) head.push({ label: `age decryption (${a.file})`, cmd: decryptCommand('$t/identity') })
  const dec = decompressCommand(a.compress)
  if (dec) head.push({ label: `${dec.split(' ')[0]} -d (${a.file})`, cmd: dec })
  const lines: string[] = [
    'set -u',
    'umask 077',
    ...captureSecrets(plan, target ? [target] : [], identity),
    `dir=${sh(plan.dir)}`,
    `[ -f ${from} ] || ${fail(sh(`${plan.dir}/${a.file} does not exist`))}`,
    `mkdir -p ${sh(layoutMeta)} || exit 1`,
    ...WORK_DIRS(`${sh(`${layoutMeta}/restore.`)}XXXXXX`),
    ...SD_OK,
    ...(identity ? WRITE_IDENTITY : [])
  ]
  const run = (steps: Step[], io: { from?: string; to?: string }) => {
    const p = pipeline(ids, steps, io)
    lines.push(p.text, `sd_ok ${p.ids.join(' ')} || exit 1`)
  }
  if (a.kind === 'files') {
    run([...head, { label: `tar -x (${a.file})`, cmd: filesExtract(`"$${WORK_VAR}"`) }], { from })
    run(
      [{ label: 'put the restored files in place', cmd: filesSwap(plan.root, plan.files, `"$${WORK_VAR}"`) }],
      {}
    )
  } else if (!target) {
    throw new Error(`no configured database matches ${a.file}`)
  } else {
    const engine = engineOf(target.engine)
    engine.restore(target, tools ?? engine.defaultTools, {
      head,
      from,
      file: a.file,
      run,
      line: text => lines.push(text)
    })
  }
  lines.push(`printf 'RESTORED=%s\\n' ${sh(a.file)}`)
  return {
    label: `restore ${a.file}`,
    script: script(...lines),
    env: secretEnv(plan, target ? [target] : [], identity),
    steps: ids.labels
  }
}

/** A probe line of one target starts with this: `DB_SERVER=0 ` (the target's index, then the value). */
export const probeKey = (t: Target, name: string) => `DB_${name}=${t.index} `

/**
 * What the host has: for each target (its lines start `DB_<KEY>=<index> `, see probeKey) its tools
 * (TOOL, MISSING), the server's version and the database size (SERVER) or the error connecting (ERROR),
 * or NODIR when a compose service's project dir is not there (no release yet); host tools the backup
 * needs (MISSING=); free space where the backups go (FREE_KB=).
 */
export function probeScript(plan: BackupPlan, opts: { needs: string[] }): RemoteCommand {
  const all: string[] = ['t=${TMPDIR:-/tmp}', ...captureSecrets(plan, plan.targets, false)]
  for (const t of plan.targets) {
    const key = (name: string) => probeKey(t, name)
    const lines: string[] = []
    const version = (tool: string) =>
      `v=$(${runIn(t, [], `${tool} --version`)} 2>&1) && printf '${key('TOOL')}%s %s\\n' ${tool} "$(printf '%s\\n' "$v" | head -n 1)" || printf '${key('MISSING')}%s %s\\n' ${tool} "$(printf '%s\\n' "$v" | tail -n 1)"`
    if (t.container) lines.push(`command -v docker >/dev/null 2>&1 || echo ${key('NODOCKER')}1`)
    const server = (cmd: string) =>
      `r=$(${cmd} 2>&1) && printf '${key('SERVER')}%s\\n' "$r" || printf '%s\\n' "$r" | tail -n 5 | sed 's/^/${key('ERROR')}/'`
    lines.push(...engineOf(t.engine).probe(t, { key, version, server }))
    // `cd <compose dir>` failing (no release yet) is said as such, not as every tool missing
    if (t.container)
      all.push(`if [ -d ${sh(t.container.dir)} ]; then`, ...lines, `else echo ${key('NODIR')}1; fi`)
    else all.push(...lines)
  }
  const lines = all
  lines.push(
    ...opts.needs.map(x => `command -v ${sh(x)} >/dev/null 2>&1 || echo MISSING=${sh(x)}`),
    `d=${sh(plan.dir)}`,
    'while [ ! -d "$d" ]; do d=$(dirname "$d"); done',
    `printf 'FREE_KB=%s\\n' "$(df -Pk "$d" | awk 'NR==2 {print $4}')"`,
    'true'
  )
  return {
    label: 'check backup tools and databases',
    script: script(...lines),
    env: secretEnv(plan, plan.targets, false)
  }
}

/** Lists the backup dir: FILE=<bytes> <name> for this app's files, TEMP= for leftovers, META= lines. */
export function listScript(plan: BackupPlan): RemoteCommand {
  const app = sh(plan.app)
  return {
    label: `list backups in ${plan.dir}`,
    script: script(
      `dir=${sh(plan.dir)}`,
      '[ -d "$dir" ] || { echo NODIR=1; exit 0; }',
      'cd "$dir" || exit 1',
      `for f in ${app}_*; do [ -f "$f" ] && printf 'FILE=%s %s\\n' "$(stat -c %s -- "$f")" "$f"; done`,
      `for f in .partial.${app}_* .verify.${app}.*; do [ -e "$f" ] && printf 'TEMP=%s %s\\n' "$(stat -c %Y -- "$f")" "$f"; done`,
      `for f in ${app}_*.meta.json; do [ -f "$f" ] && printf 'META=%s\\n' "$(tr -d '\\n' <"$f")"; done`,
      `printf 'FREE_KB=%s\\n' "$(df -Pk . | awk 'NR==2 {print $4}')"`,
      'printf \'NOW=%s\\n\' "$(date -u +%s)"',
      'true'
    )
  }
}

/**
 * Marks a published backup as kept out of retention (writes NAME.keep with `why`), or takes the mark
 * away (`why` undefined). Prints KEPT=1 or KEPT=0.
 */
export function keepScript(plan: BackupPlan, name: BackupName, why: string | undefined): RemoteCommand {
  const keep = sh(keepFile(name))
  return {
    label: `${why === undefined ? 'unprotect' : 'protect'} backup ${name}`,
    script: script(
      'umask 077',
      `cd ${sh(plan.dir)} 2>/dev/null || ${fail(sh(`the backup directory ${plan.dir} does not exist`))}`,
      `[ -f ${sh(manifestFile(name))} ] || ${fail(sh(`backup ${name} does not exist (no ${manifestFile(name)})`))}`,
      why === undefined
        ? `rm -f -- ${keep} || exit 1; echo KEPT=0`
        : `printf '%s\\n' ${sh(why)} >${keep} || ${fail(sh(`cannot write ${keepFile(name)}`))}; echo KEPT=1`
    )
  }
}

/** Deletes the named files and leftover temp dirs in the backup dir (names checked by the caller). */
export function pruneScript(plan: BackupPlan, files: string[], temps: string[]): RemoteCommand {
  return {
    label: `prune ${files.length} file(s) in ${plan.dir}`,
    script: script(
      `cd ${sh(plan.dir)} || exit 1`,
      ...files.map(f => `rm -f -- ${sh(f)} && printf 'REMOVED=%s\\n' ${sh(f)}`),
      ...temps.map(f => `rm -rf -- ${sh(f)} && printf 'REMOVED=%s\\n' ${sh(f)}`),
      'true'
    )
  }
}

/** The raw command line that writes one backup file to stdout, for a download. */
export function catCommand(plan: BackupPlan, file: string): string {
  return `cat ${sh(`${plan.dir}/${file}`)}`
}
