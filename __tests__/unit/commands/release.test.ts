import { execFileSync } from 'node:child_process'
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'
import { withEnv } from '../../../src/commands/command.js'
import { Layout } from '../../../src/commands/layout.js'
import {
  appendHistory,
  appendHostLog,
  diskStatus,
  inRelease,
  inspectHost,
  linkShared,
  markComplete,
  listReleases,
  parseKeyValues,
  readHistory,
  removeCurrent,
  removeReleases,
  shJoin,
  switchCurrent,
  unpackCommand
} from '../../../src/commands/release.js'
import { shJoin as quoteShJoin } from '../../../src/commands/quote.js'
import { parseHistory } from '../../../src/release/history.js'
import { cleanup, run, runRemote, tempDir } from '../helpers/shell.js'

const ID = '20261121T193000Z-3f2a1c9'
const ID2 = '20261122T080000Z-local'

describe('exact commands', () => {
  const l = new Layout('/srv/ledger')

  test('unpackCommand', () => {
    expect(unpackCommand(l, ID)).toBe(
      `rm -f /srv/ledger/.safe-deploy/complete/${ID} && mkdir -p /srv/ledger/releases/${ID} && tar -xzf - --no-same-owner -C /srv/ledger/releases/${ID}`
    )
    expect(unpackCommand(new Layout('/srv/my app'), ID)).toBe(
      `rm -f '/srv/my app/.safe-deploy/complete/${ID}' && mkdir -p '/srv/my app/releases/${ID}' && tar -xzf - --no-same-owner -C '/srv/my app/releases/${ID}'`
    )
    expect(markComplete(l, ID).script).toBe(
      `mkdir -p /srv/ledger/.safe-deploy/complete\n: > /srv/ledger/.safe-deploy/complete/${ID}`
    )
  })

  test('switchCurrent', () => {
    expect(switchCurrent(l, ID)).toEqual({
      label: `switch current to ${ID}`,
      script: [
        'set -e',
        `[ -d /srv/ledger/releases/${ID} ] || { printf 'release %s does not exist\\n' ${ID} >&2; exit 1; }`,
        `ln -sfn releases/${ID} /srv/ledger/.current.${ID}.tmp`,
        `mv -fT /srv/ledger/.current.${ID}.tmp /srv/ledger/current`,
        'readlink /srv/ledger/current'
      ].join('\n')
    })
  })

  test('removeCurrent and removeReleases', () => {
    expect(removeCurrent(l)).toEqual({ label: 'remove current', script: 'rm -f /srv/ledger/current' })
    expect(removeReleases(l, [ID, ID2])).toEqual({
      label: `remove ${ID}, ${ID2}`,
      script: [
        'cur=$(readlink /srv/ledger/current 2>/dev/null || true)',
        `if [ "$cur" = releases/${ID} ]; then printf 'refusing to remove the current release %s\\n' ${ID} >&2; else rm -rf /srv/ledger/releases/${ID} && rm -f /srv/ledger/.safe-deploy/complete/${ID}; fi`,
        `if [ "$cur" = releases/${ID2} ]; then printf 'refusing to remove the current release %s\\n' ${ID2} >&2; else rm -rf /srv/ledger/releases/${ID2} && rm -f /srv/ledger/.safe-deploy/complete/${ID2}; fi`
      ].join('\n')
    })
  })

  test('linkShared', () => {
    expect(linkShared(l, ID, ['.env', "it's"], ['data'])).toEqual({
      label: 'link shared files',
      script: [
        `rel=/srv/ledger/releases/${ID}`,
        'shared=/srv/ledger/shared',
        'relreal=$(cd "$rel" && pwd -P) || exit 3',
        'set -e',
        'mkdir -p "$shared/"data',
        'rm -rf "$rel/"data; mkdir -p "$(dirname "$rel/"data)"; ln -s "$shared/"data "$rel/"data',
        'rm -rf "$rel/".env; mkdir -p "$(dirname "$rel/".env)"; ln -s "$shared/".env "$rel/".env',
        `rm -rf "$rel/"'it'\\''s'; mkdir -p "$(dirname "$rel/"'it'\\''s')"; ln -s "$shared/"'it'\\''s' "$rel/"'it'\\''s'`
      ].join('\n')
    })
  })

  test('inRelease', () => {
    expect(inRelease(l, ID, 'build', 'npm ci --omit=dev', { A: '1' })).toEqual({
      label: 'build',
      user: true,
      env: { A: '1' },
      script: `cd /srv/ledger/releases/${ID} || exit 1\nnpm ci --omit=dev`
    })
  })

  test('history, host log, listing and disk', () => {
    expect(appendHistory(l, { release: ID, note: "it's" })).toEqual({
      label: 'record history',
      script: [
        'mkdir -p /srv/ledger/.safe-deploy',
        `if [ -s /srv/ledger/.safe-deploy/history.jsonl ] && [ -n "$(tail -c 1 /srv/ledger/.safe-deploy/history.jsonl)" ]; then printf '\\n' >> /srv/ledger/.safe-deploy/history.jsonl; fi`,
        `printf '%s\\n' '{"release":"${ID}","note":"it'\\''s"}' >> /srv/ledger/.safe-deploy/history.jsonl`
      ].join('\n')
    })
    expect(readHistory(l)).toEqual({
      label: 'read history',
      script: 'tail -n 1000 /srv/ledger/.safe-deploy/history.jsonl 2>/dev/null || true'
    })
    expect(readHistory(l, 5).script).toBe(
      'tail -n 5 /srv/ledger/.safe-deploy/history.jsonl 2>/dev/null || true'
    )
    expect(appendHostLog(l, 'hello').script).toBe(
      "mkdir -p /srv/ledger/.safe-deploy\nprintf '%s\\n' hello >> /srv/ledger/.safe-deploy/deploy.log"
    )
    expect(listReleases(l).script).toBe(
      [
        `printf 'CURRENT=%s\\n' "$(readlink /srv/ledger/current 2>/dev/null)"`,
        `ls -1 /srv/ledger/releases 2>/dev/null | sed 's/^/RELEASE=/'`,
        'true'
      ].join('\n')
    )
    expect(diskStatus(l).script).toBe(
      [
        `printf 'FREE_KB=%s\\n' "$(df -Pk /srv/ledger 2>/dev/null | awk 'NR==2 {print $4}')"`,
        `printf 'USED_KB=%s\\n' "$(du -sk /srv/ledger 2>/dev/null | cut -f1)"`
      ].join('\n')
    )
  })

  test('inspectHost', () => {
    expect(inspectHost(l, ['.env', 'a b'], ['tar']).script).toBe(
      [
        'root=/srv/ledger',
        'mkdir -p "$root/releases" "$root/shared" "$root/.safe-deploy" || { echo "ERROR=cannot create $root"; exit 0; }',
        '[ -w "$root/releases" ] || echo "ERROR=$root/releases is not writable"',
        'printf "CURRENT=%s\\n" "$(readlink "$root/current" 2>/dev/null)"',
        `printf "FREE_KB=%s\\n" "$(df -Pk "$root" | awk 'NR==2 {print $4}')"`,
        `[ -e "$root/shared/".env ] || printf 'MISSING=%s\\n' .env`,
        `[ -e "$root/shared/"'a b' ] || printf 'MISSING=%s\\n' 'a b'`,
        `command -v tar >/dev/null 2>&1 || printf 'NOTOOL=%s\\n' tar`,
        'ls -1 "$root/releases" 2>/dev/null | sed "s/^/RELEASE=/"',
        'ls -1 "$root/.safe-deploy/complete" 2>/dev/null | sed "s/^/COMPLETE=/"',
        'true'
      ].join('\n')
    )
  })

  test('release.ts re-exports the one shJoin', () => {
    expect(shJoin).toBe(quoteShJoin)
  })
})

describe('parseKeyValues', () => {
  test('collects KEY=value lines, repeated keys in order, value split at the first =', () => {
    const kv = parseKeyValues(
      'CURRENT=releases/a\nRELEASE=a\nRELEASE=b\nOWNER={"who":"x=y"}\nFREE_KB=\nnoise line\nlower=x\n=x\nMIXED1=x\n'
    )
    expect([...kv.entries()]).toEqual([
      ['CURRENT', ['releases/a']],
      ['RELEASE', ['a', 'b']],
      ['OWNER', ['{"who":"x=y"}']],
      ['FREE_KB', ['']]
    ])
    expect(parseKeyValues('').size).toBe(0)
  })
})

describe('scripts run for real with /bin/sh, under a hostile root', () => {
  let base: string
  let root: string
  let l: Layout
  const marker = 'PWNED'

  beforeEach(() => {
    base = tempDir('release')
    root = join(base, `deploy root 'q' "dq" $(touch ${marker}) \`touch ${marker}\`; x`)
    mkdirSync(root)
    l = new Layout(root)
  })
  afterEach(() => {
    // whatever ran, nothing smuggled in through the root's name may have run
    expect(existsSync(join(base, marker))).toBe(false)
    cleanup(base)
  })

  const exec = (script: string) => runRemote(script, { cwd: base })
  const makeRelease = (id: string) => mkdirSync(l.release(id), { recursive: true })

  test('inspectHost creates the layout and reports current, disk, missing files and tools', async () => {
    mkdirSync(l.releases)
    makeRelease(ID)
    makeRelease(ID2)
    symlinkSync(`releases/${ID}`, l.current)
    mkdirSync(l.shared)
    writeFileSync(join(l.shared, "present 'file'"), 'x')
    const r = await exec(
      inspectHost(l, ["present 'file'", '$(touch PWNED)', 'missing dir/a b'], ['sh', 'no-such-tool-xyz $(x)'])
        .script
    )
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
    const kv = parseKeyValues(r.stdout)
    expect(kv.get('CURRENT')).toEqual([`releases/${ID}`])
    expect(kv.get('FREE_KB')?.[0]).toMatch(/^\d+$/)
    expect(kv.get('MISSING')).toEqual(['$(touch PWNED)', 'missing dir/a b'])
    expect(kv.get('NOTOOL')).toEqual(['no-such-tool-xyz $(x)'])
    expect(kv.get('RELEASE')).toEqual([ID, ID2])
    expect(kv.has('ERROR')).toBe(false)
    expect(readdirSync(root).sort()).toEqual(['.safe-deploy', 'current', 'releases', 'shared'])
  })

  test('inspectHost on a fresh root reports no current and no releases', async () => {
    const r = await exec(inspectHost(l, [], []).script)
    const kv = parseKeyValues(r.stdout)
    expect(kv.get('CURRENT')).toEqual([''])
    expect(kv.has('RELEASE')).toBe(false)
    expect(lstatSync(l.meta).isDirectory()).toBe(true)
  })

  test('unpackCommand unpacks a tar.gz stream from stdin into the new release', async () => {
    const src = join(base, 'src')
    mkdirSync(join(src, 'bin'), { recursive: true })
    writeFileSync(join(src, 'VERSION'), '1.0.0\n')
    writeFileSync(join(src, "odd 'name' $(x).txt"), 'odd')
    writeFileSync(join(src, 'bin', 'restart'), '#!/bin/sh\n')
    const archive = execFileSync('tar', ['-czf', '-', '-C', src, '.'])
    const r = await run('/bin/sh', ['-c', unpackCommand(l, ID)], { cwd: base, input: archive })
    expect(r.code).toBe(0)
    expect(readFileSync(join(l.release(ID), 'VERSION'), 'utf8')).toBe('1.0.0\n')
    expect(readFileSync(join(l.release(ID), "odd 'name' $(x).txt"), 'utf8')).toBe('odd')
    expect(readdirSync(l.release(ID)).sort()).toEqual(['VERSION', 'bin', "odd 'name' $(x).txt"])
  })

  test('linkShared links hostile names literally and replaces what the release shipped', async () => {
    const files = ['.env', "it's.conf", '$(touch PWNED)', '`touch PWNED`', 'config dir/a b.json', '-rf']
    const dirs = ['data', 'up loads', 'logs/$(touch PWNED)']
    makeRelease(ID)
    writeFileSync(join(l.release(ID), '.env'), 'shipped in the release')
    mkdirSync(join(l.release(ID), 'data'))
    writeFileSync(join(l.release(ID), 'data', 'old'), 'x')
    mkdirSync(l.shared)
    const r = await exec(linkShared(l, ID, files, dirs).script)
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' })
    for (const name of [...files, ...dirs]) {
      const link = join(l.release(ID), name)
      expect({ name, link: lstatSync(link).isSymbolicLink() }).toEqual({ name, link: true })
      expect(readlinkSync(link)).toBe(`${l.shared}/${name}`)
    }
    for (const d of dirs) expect(lstatSync(join(l.shared, d)).isDirectory()).toBe(true)
    expect(readdirSync(l.release(ID)).sort()).toEqual(
      [
        '$(touch PWNED)',
        '-rf',
        '.env',
        '`touch PWNED`',
        'config dir',
        'data',
        "it's.conf",
        'logs',
        'up loads'
      ].sort()
    )
    // the link now leads to the shared file: what the release shipped is gone
    writeFileSync(join(l.shared, '.env'), 'SECRET=shared')
    expect(readFileSync(join(l.release(ID), '.env'), 'utf8')).toBe('SECRET=shared')
    expect(readdirSync(join(l.release(ID), 'data'))).toEqual([])
  })

  test('switchCurrent points current at releases/<id> (relative) and leaves no temp file', async () => {
    makeRelease(ID)
    makeRelease(ID2)
    const first = await exec(switchCurrent(l, ID).script)
    expect(first).toEqual({ code: 0, stdout: `releases/${ID}\n`, stderr: '' })
    expect(lstatSync(l.current).isSymbolicLink()).toBe(true)
    expect(readlinkSync(l.current)).toBe(`releases/${ID}`)

    const second = await exec(switchCurrent(l, ID2).script)
    expect(second).toEqual({ code: 0, stdout: `releases/${ID2}\n`, stderr: '' })
    expect(readlinkSync(l.current)).toBe(`releases/${ID2}`)
    // a rename over the old link, not a link created inside the directory it pointed to
    expect(readdirSync(l.release(ID))).toEqual([])
    expect(readdirSync(root).sort()).toEqual(['current', 'releases'])
  })

  test('switchCurrent to a release that does not exist fails and leaves current alone', async () => {
    makeRelease(ID)
    await exec(switchCurrent(l, ID).script)
    const r = await exec(switchCurrent(l, ID2).script)
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(`release ${ID2} does not exist\n`)
    expect(readlinkSync(l.current)).toBe(`releases/${ID}`)
    expect(readdirSync(root).sort()).toEqual(['current', 'releases'])
  })

  test('removeReleases removes the others and refuses the current one', async () => {
    const third = '20261120T000000Z-aaaaaaa'
    for (const id of [ID, ID2, third]) makeRelease(id)
    writeFileSync(join(l.release(ID), 'file'), 'x')
    symlinkSync(`releases/${ID2}`, l.current)
    const r = await exec(removeReleases(l, [ID, ID2, third]).script)
    expect(r.code).toBe(0)
    expect(r.stderr).toBe(`refusing to remove the current release ${ID2}\n`)
    expect(readdirSync(l.releases)).toEqual([ID2])
  })

  test('removeReleases without a current removes them all', async () => {
    makeRelease(ID)
    makeRelease(ID2)
    const r = await exec(removeReleases(l, [ID]).script)
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' })
    expect(readdirSync(l.releases)).toEqual([ID2])
  })

  test('removeCurrent removes the link and nothing it points to', async () => {
    makeRelease(ID)
    symlinkSync(`releases/${ID}`, l.current)
    const r = await exec(removeCurrent(l).script)
    expect(r.code).toBe(0)
    expect(existsSync(l.current)).toBe(false)
    expect(readdirSync(l.releases)).toEqual([ID])
  })

  test('listReleases reports current and every release', async () => {
    makeRelease(ID2)
    makeRelease(ID)
    symlinkSync(`releases/${ID}`, l.current)
    const kv = parseKeyValues((await exec(listReleases(l).script)).stdout)
    expect(kv.get('CURRENT')).toEqual([`releases/${ID}`])
    expect(kv.get('RELEASE')).toEqual([ID, ID2])
  })

  test('listReleases on an empty root succeeds with no releases', async () => {
    const r = await exec(listReleases(l).script)
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('CURRENT=\n')
  })

  test('appendHistory and readHistory round-trip hostile entries as JSON lines', async () => {
    const entries = [
      { type: 'deploy', release: ID, actor: `it's "me" $(touch ${marker})\nsecond line`, status: 'success' },
      { type: 'rollback', release: ID2, actor: '`id` %s %n \\', status: 'success', from: ID }
    ]
    for (const e of entries) expect((await exec(appendHistory(l, e).script)).code).toBe(0)
    const text = (await exec(readHistory(l).script)).stdout
    expect(text.split('\n')).toHaveLength(3)
    expect(parseHistory(text)).toEqual(entries)
    expect((await exec(readHistory(l, 1).script)).stdout).toBe(JSON.stringify(entries[1]) + '\n')
  })

  test('appendHistory ends a torn last line first, so the next entry keeps a line of its own', async () => {
    const a = { type: 'deploy', release: ID, actor: 'a', status: 'success' }
    const bad = { type: 'deploy', release: ID2, actor: 'b', status: 'rolled-back', bad: true }
    mkdirSync(l.meta, { recursive: true })
    writeFileSync(l.history, JSON.stringify(a) + '\n' + '{"type":"deploy","release":"2026')
    expect((await exec(appendHistory(l, bad).script)).code).toBe(0)
    const text = (await exec(readHistory(l).script)).stdout
    expect(text.split('\n')[2]).toBe(JSON.stringify(bad))
    expect(parseHistory(text)).toEqual([a, bad])
  })

  test('linkShared refuses a shared path under a symlink in the release, changing nothing', async () => {
    const outside = join(base, 'elsewhere')
    mkdirSync(outside)
    writeFileSync(join(outside, '.env'), 'outside bytes')
    makeRelease(ID)
    symlinkSync(outside, join(l.release(ID), 'config'))
    mkdirSync(l.shared)
    const r = await exec(linkShared(l, ID, ['config/.env'], []).script)
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('refusing to link shared config/.env: config in the release is a symlink')
    expect(readFileSync(join(outside, '.env'), 'utf8')).toBe('outside bytes')
    expect(lstatSync(join(l.release(ID), 'config')).isSymbolicLink()).toBe(true)
    // a deeper symlink, and a dir that is linked in before a file under it, are refused the same way
    mkdirSync(join(l.release(ID), 'a'))
    symlinkSync(outside, join(l.release(ID), 'a', 'b'))
    const deep = await exec(linkShared(l, ID, ['data/x', 'a/b/c/.env'], ['data']).script)
    expect(deep.code).toBe(3)
    expect(deep.stderr).toContain('a/b in the release is a symlink')
    expect(existsSync(join(l.release(ID), 'data'))).toBe(false)
    expect(readdirSync(outside)).toEqual(['.env'])
  })

  test('readHistory with no history prints nothing and succeeds', async () => {
    expect(await exec(readHistory(l).script)).toEqual({ code: 0, stdout: '', stderr: '' })
  })

  test('appendHostLog appends text literally', async () => {
    const text = `[2026-11-21 19:30:05] [deploy] it's $(touch ${marker}) \`x\` %s\nsecond line`
    await exec(appendHostLog(l, text).script)
    await exec(appendHostLog(l, 'next').script)
    expect(readFileSync(l.hostLog, 'utf8')).toBe(`${text}\nnext\n`)
  })

  test('diskStatus reports free and used kilobytes', async () => {
    writeFileSync(join(root, 'big'), Buffer.alloc(600 * 1024, 1))
    const kv = parseKeyValues((await exec(diskStatus(l).script)).stdout)
    expect(kv.get('FREE_KB')?.[0]).toMatch(/^\d+$/)
    expect(Number(kv.get('USED_KB')?.[0])).toBeGreaterThanOrEqual(600)
  })

  test('inRelease runs the command inside the release with its env', async () => {
    makeRelease(ID)
    const cmd = inRelease(l, ID, 'build', 'pwd; printf "%s\\n" "$TOKEN"', { TOKEN: "t'o $(k) en" })
    const r = await exec(withEnv(cmd))
    expect(r).toEqual({ code: 0, stdout: `${l.release(ID)}\nt'o $(k) en\n`, stderr: '' })
  })

  test('inRelease stops when the release is missing, before the command runs', async () => {
    const r = await exec(withEnv(inRelease(l, ID, 'build', `touch ${marker}`, {})))
    expect(r.code).toBe(1)
    expect(existsSync(join(base, marker))).toBe(false)
  })
})
