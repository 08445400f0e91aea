/**
 * The host scripts run for real under /bin/sh, bash and dash: real tar, gzip, zstd, sha256sum and age;
 * fake database tools where a failure must be staged. dash has no `set -o pipefail`: these tests are the
 * proof that a failing command anywhere in a pipeline is caught and publishes nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { join } from 'node:path'
import { withEnv, type RemoteCommand } from '../../../src/commands/command.js'
import { Layout } from '../../../src/commands/layout.js'
import { backupSchema } from '../../../src/backup-engines/config.js'
import { resolvePlan, type BackupPlan } from '../../../src/backup-engines/plan.js'
import { newBackupName, parseArtifactFile } from '../../../src/backup-engines/name.js'
import {
  backupScript,
  listScript,
  pipeline,
  restoreScript,
  StepIds,
  verifyScript
} from '../../../src/backup/script.js'
import { describeFailure } from '../../../src/backup/ops/shared.js'
import { parseKeyValues } from '../../../src/commands/release.js'
import { cleanup, runEvalIn, shells, tempDir } from '../helpers/shell.js'

let dir: string
let bin: string
let identity: string
let recipient: string

beforeAll(() => {
  dir = tempDir('sd-script')
  bin = join(dir, 'bin')
  mkdirSync(bin)
  // a mysqldump that writes a whole-looking dump (it even ends in "-- Dump completed") and then fails:
  // only the per-command exit status can tell
  const fake = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`)
    chmodSync(join(bin, name), 0o755)
  }
  fake(
    'mariadb-dump',
    [
      'printf "CREATE TABLE \\`items\\` (\\n  id int\\n);\\nINSERT INTO items VALUES (1);\\n"',
      'case "$FAKE_MODE" in',
      '  fail) echo "mariadb-dump: Got error: 2013: Lost connection to server during query" >&2; printf -- "-- Dump completed on 2026-11-21\\n"; exit 2 ;;',
      '  empty) exit 0 ;;',
      // more than the pipes between the commands can hold: a reader that dies makes this one die of SIGPIPE
      '  big) head -c 1048576 /dev/zero | tr "\\000" x ;;',
      'esac',
      'printf -- "-- Dump completed on 2026-11-21 19:30:05\\n"'
    ].join('\n')
  )
  fake(
    'pg_dump',
    'echo "pg_dump: error: connection to server failed: FATAL: password authentication failed" >&2; exit 1'
  )
  identity = join(dir, 'key.txt')
  execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' })
  recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim()
})
afterAll(() => cleanup(dir))

let n = 0
function setup(backup: Record<string, unknown>): { root: string; plan: BackupPlan } {
  const root = join(dir, `root${++n}`)
  mkdirSync(join(root, 'shared', 'uploads'), { recursive: true })
  writeFileSync(join(root, 'shared', '.env'), 'SECRET=1\n')
  writeFileSync(join(root, 'shared', 'uploads', 'a.bin'), Buffer.alloc(4096, 7))
  return { root, plan: resolvePlan('shop', backupSchema.parse(backup), new Layout(root)) }
}

const NAME = newBackupName('shop', new Date('2026-11-21T19:30:05Z'))
const env = (extra: Record<string, string> = {}) => ({
  PATH: `${bin}:/usr/bin:/bin`,
  HOME: dir,
  ...extra
})

async function runCmd(shell: string, cmd: RemoteCommand, extra = {}) {
  return runEvalIn(shell, withEnv(cmd), { env: env(extra) })
}

const ls = (d: string) => (existsSync(d) ? readdirSync(d).sort() : [])

for (const shell of shells()) {
  describe(`backup script under ${shell}`, () => {
    test('files: dump, compress, verify, checksum, publish 0600 files; sha256sum -c passes', async () => {
      const { root, plan } = setup({ files: ['shared/.env', 'shared/uploads'] })
      const cmd = backupScript({ plan, name: NAME, meta: { reason: 'test' } })
      const r = await runCmd(shell, cmd)
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      const b = join(root, 'backups')
      expect(ls(b)).toEqual([`${NAME}.files.tar.gz`, `${NAME}.meta.json`, `${NAME}.sha256`])
      for (const f of ls(b)) expect(statSync(join(b, f)).mode & 0o777).toBe(0o600)
      expect(statSync(b).mode & 0o077).toBe(0)
      expect(execFileSync('sha256sum', ['-c', `${NAME}.sha256`], { cwd: b, encoding: 'utf8' })).toBe(
        `${NAME}.files.tar.gz: OK\n`
      )
      expect(execFileSync('tar', ['-tzf', `${NAME}.files.tar.gz`], { cwd: b, encoding: 'utf8' })).toContain(
        './shared/uploads/a.bin'
      )
      expect(JSON.parse(readFileSync(join(b, `${NAME}.meta.json`), 'utf8'))).toEqual({ reason: 'test' })
      expect(parseKeyValues(r.stdout).get('FILE')).toHaveLength(3)
      // a second backup of the same name is refused with exit 17 (the caller takes the next second)
      const again = await runCmd(shell, cmd)
      expect(again.code).toBe(17)
      expect(again.stdout).toContain(`EXISTS=${b}/${NAME}.`)
    })

    test('a dump that fails after writing a whole-looking stream publishes nothing (no pipefail needed)', async () => {
      const { root, plan } = setup({
        databases: [{ engine: 'mysql', database: 'shop', user: 'app', password: 'pw' }]
      })
      const cmd = backupScript({
        plan,
        name: NAME,
        tools: { 0: { dump: 'mariadb-dump', client: 'mariadb' } },
        meta: {}
      })
      const r = await runCmd(shell, cmd, { FAKE_MODE: 'fail' })
      expect(r.code).toBe(1)
      expect(ls(join(root, 'backups'))).toEqual([])
      expect(describeFailure(cmd, r.stdout, r.stderr, r.code ?? -1)).toBe(
        'mariadb-dump of the MySQL database "shop" exited 2: mariadb-dump: Got error: 2013: Lost connection to server during query'
      )
    })

    test('an empty dump publishes nothing', async () => {
      const { root, plan } = setup({ databases: [{ engine: 'mysql', database: 'shop' }] })
      const cmd = backupScript({
        plan,
        name: NAME,
        tools: { 0: { dump: 'mariadb-dump', client: 'mariadb' } },
        meta: {}
      })
      const r = await runCmd(shell, cmd, { FAKE_MODE: 'empty' })
      expect(r.code).toBe(1)
      expect(ls(join(root, 'backups'))).toEqual([])
      expect(describeFailure(cmd, r.stdout, r.stderr, 1)).toMatch(
        /^dump completeness check \(shop_\S+\.sql\.gz\) exited 1/
      )
    })

    test('the failing program is named, not the ones that died of SIGPIPE after it', async () => {
      const { root, plan } = setup({ databases: [{ engine: 'postgres', database: 'shop', password: 'pw' }] })
      const cmd = backupScript({ plan, name: NAME, meta: {} })
      const r = await runCmd(shell, cmd)
      expect(r.code).toBe(1)
      expect(ls(join(root, 'backups'))).toEqual([])
      expect(describeFailure(cmd, r.stdout, r.stderr, 1)).toBe(
        'pg_dump of the PostgreSQL database "shop" exited 1: pg_dump: error: connection to server failed: FATAL: password authentication failed'
      )
      // age is missing: it fails, tee and mariadb-dump then die of SIGPIPE (141); age is to blame
      const enc = setup({
        databases: [{ engine: 'mysql', database: 'shop' }],
        encrypt: { recipients: [recipient] }
      })
      // a PATH with everything in /usr/bin but age (/bin is /usr/bin on Debian 12)
      const noAge = join(dir, 'noage')
      if (!existsSync(noAge)) {
        mkdirSync(noAge)
        for (const f of readdirSync('/usr/bin'))
          if (f !== 'age') symlinkSync(join('/usr/bin', f), join(noAge, f))
      }
      const c2 = backupScript({
        plan: enc.plan,
        name: NAME,
        tools: { 0: { dump: 'mariadb-dump', client: 'mariadb' } },
        meta: {}
      })
      const r2 = await runEvalIn(shell, withEnv(c2), {
        env: { PATH: `${bin}:${noAge}`, HOME: dir, FAKE_MODE: 'big' }
      })
      expect(r2.code).toBe(1)
      expect(
        parseKeyValues(r2.stdout)
          .get('RC')
          ?.some(l => l.endsWith(' 141'))
      ).toBe(true)
      expect(describeFailure(c2, r2.stdout, r2.stderr, 1)).toMatch(
        /^age encryption \(shop_20261121_193005\.sql\.gz\.age\) was not found \(exit 127\): .*age: (command )?not found/
      )
      expect(ls(join(enc.root, 'backups'))).toEqual([])
    })

    test('encrypted: verified on the plain stream before encryption, and by decrypting with the identity', async () => {
      const { root, plan } = setup({
        files: ['shared/.env'],
        encrypt: { recipients: [recipient], identity: readFileSync(identity, 'utf8') }
      })
      const cmd = backupScript({ plan, name: NAME, meta: {} })
      expect(cmd.env).toEqual({ SD_AGE_IDENTITY: readFileSync(identity, 'utf8') })
      expect(cmd.script).not.toContain('AGE-SECRET-KEY')
      const r = await runCmd(shell, cmd)
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      const b = join(root, 'backups')
      const file = `${NAME}.files.tar.gz.age`
      expect(ls(b)).toEqual([file, `${NAME}.meta.json`, `${NAME}.sha256`])
      expect(readFileSync(join(b, file)).subarray(0, 21).toString()).toBe('age-encryption.org/v1')
      const plain = execFileSync('sh', ['-c', `age -d -i '${identity}' '${join(b, file)}' | tar -tzf -`], {
        encoding: 'utf8'
      })
      expect(plain).toBe('./shared/.env\n')
      // the identity file lived in the temp dir, which is gone
      expect(readdirSync(b).some(f => f.startsWith('.'))).toBe(false)
    })
  })
}

describe('verify script', () => {
  async function published(backup: Record<string, unknown>) {
    const s = setup(backup)
    const r = await runCmd('/bin/sh', backupScript({ plan: s.plan, name: NAME, meta: {} }))
    expect(r.code).toBe(0)
    const b = join(s.root, 'backups')
    const artifacts = ls(b).flatMap(f => {
      const a = parseArtifactFile(NAME, f)
      return a ? [a] : []
    })
    return { ...s, b, artifacts }
  }

  test('a whole backup verifies: OK per artifact', async () => {
    const { plan, artifacts } = await published({ files: ['shared'] })
    const r = await runCmd('/bin/sh', verifyScript(plan, NAME, artifacts))
    expect(r.code).toBe(0)
    expect(parseKeyValues(r.stdout).get('OK')).toEqual([`${NAME}.files.tar.gz`])
  })

  test.each([
    [
      'one byte flipped',
      (f: string) => {
        const buf = readFileSync(f)
        const i = Math.floor(buf.length / 2)
        buf.writeUInt8(buf.readUInt8(i) ^ 0x01, i)
        writeFileSync(f, buf)
      }
    ],
    ['one byte cut off', (f: string) => writeFileSync(f, readFileSync(f).subarray(0, -1))]
  ])('%s: refused, naming the file', async (_what, damage) => {
    const { plan, b, artifacts } = await published({ files: ['shared'] })
    damage(join(b, `${NAME}.files.tar.gz`))
    const cmd = verifyScript(plan, NAME, artifacts)
    const r = await runCmd('/bin/sh', cmd)
    expect(r.code).toBe(1)
    const why = describeFailure(cmd, r.stdout, r.stderr, 1)
    expect(why).toContain(`the files do not match their checksums in ${NAME}.sha256`)
    expect(why).toContain(`${NAME}.files.tar.gz: FAILED`)
  })

  test('encrypted, no identity: checked by manifest and header only, and it says so', async () => {
    const { artifacts, root } = await published({ files: ['shared'], encrypt: { recipients: [recipient] } })
    const plan = resolvePlan(
      'shop',
      backupSchema.parse({ files: ['shared'], encrypt: { recipients: [recipient] } }),
      new Layout(root)
    )
    const r = await runCmd('/bin/sh', verifyScript(plan, NAME, artifacts))
    expect(r.code).toBe(0)
    expect(parseKeyValues(r.stdout).get('UNCHECKED')).toEqual([`${NAME}.files.tar.gz.age`])
  })

  test('a missing manifest: the backup is incomplete', async () => {
    const { plan, b, artifacts } = await published({ files: ['shared'] })
    execFileSync('rm', [join(b, `${NAME}.sha256`)])
    const r = await runCmd('/bin/sh', verifyScript(plan, NAME, artifacts))
    expect(r.code).toBe(1)
    expect(r.stdout).toContain(`FAIL=${NAME}.sha256 is missing: the backup is incomplete`)
  })
})

describe('restore script (files)', () => {
  test('puts the files back exactly; the work dir under .safe-deploy is removed', async () => {
    const s = setup({ files: ['shared/.env', 'shared/uploads'] })
    expect((await runCmd('/bin/sh', backupScript({ plan: s.plan, name: NAME, meta: {} }))).code).toBe(0)
    writeFileSync(join(s.root, 'shared', '.env'), 'CHANGED=1\n')
    writeFileSync(join(s.root, 'shared', 'uploads', 'new.bin'), 'added after the backup')
    const a = parseArtifactFile(NAME, `${NAME}.files.tar.gz`)!
    const r = await runCmd('/bin/sh', restoreScript(s.plan, new Layout(s.root).meta, a, undefined))
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(readFileSync(join(s.root, 'shared', '.env'), 'utf8')).toBe('SECRET=1\n')
    expect(ls(join(s.root, 'shared', 'uploads'))).toEqual(['a.bin'])
    expect(ls(join(s.root, '.safe-deploy'))).toEqual([])
  })
})

describe('pipeline()', () => {
  test('records each exit status in a file: the portable stand-in for pipefail', () => {
    const ids = new StepIds()
    const p = pipeline(
      ids,
      [
        { label: 'a', cmd: 'dump' },
        { label: 'b', cmd: 'gzip -c' }
      ],
      { from: '/dev/null', to: '"$t/out"' }
    )
    expect(p.text).toBe(
      '{ ( dump ) 2>"$t/s1.err" </dev/null; echo $? >"$t/s1.rc"; } | { ( gzip -c ) 2>"$t/s2.err"; echo $? >"$t/s2.rc"; } >"$t/out"'
    )
    expect(p.ids).toEqual(['s1', 's2'])
    expect(ids.labels).toEqual({ s1: 'a', s2: 'b' })
  })

  test('listScript names only this app’s files', () => {
    const { plan } = setup({ files: ['x'] })
    expect(listScript(plan).script).toContain('for f in shop_*; do')
  })
})
