import { describe, expect, test } from '@jest/globals'
import {
  expandTokens,
  hostPatternsMatch,
  parseProxyJump,
  parseSshConfig,
  sshHostConfig
} from '../../../src/config/sshconfig.js'

const CONFIG = `# personal config
User everyone-default-is-not-first

Host prod production
  HostName web1.example.org
  User deploy
  Port 2222
  IdentityFile ~/.ssh/id_prod
  IdentityFile "~/.ssh/id with space"

Host *.internal !db.internal
  User ops
  ProxyJump bastion.example.org:2200

Host=staging
  HostName=10.0.0.7
  Port = 2200

Match host prod
  User from-match

Host *
  User fallback
  Port 22
  IdentityFile ~/.ssh/id_%h_%r
  Include other.conf
`

describe('parseSshConfig / sshHostConfig', () => {
  const blocks = parseSshConfig(CONFIG)

  test('an alias takes HostName, User, Port and every IdentityFile; the first value obtained wins', () => {
    // the line before any Host applies to every host, and comes first
    const prod = sshHostConfig(blocks, 'prod')
    expect(prod).toMatchObject({
      hostName: 'web1.example.org',
      user: 'everyone-default-is-not-first',
      port: 2222,
      identityFiles: ['~/.ssh/id_prod', '~/.ssh/id with space', '~/.ssh/id_%h_%r'],
      matched: ['prod production', '*']
    })
    expect(prod.ignored).toEqual(['Match', 'Include'])
    expect(sshHostConfig(parseSshConfig(CONFIG.replace(/^User every.*$/m, '')), 'PRODUCTION')).toMatchObject({
      hostName: 'web1.example.org',
      user: 'deploy'
    })
  })

  test('Keyword=value and Keyword = value are read like Keyword value', () => {
    expect(sshHostConfig(blocks, 'staging')).toMatchObject({ hostName: '10.0.0.7', port: 2200 })
  })

  test('wildcards and negation: a negated match excludes the host whatever else matches', () => {
    const noTop = parseSshConfig(CONFIG.replace(/^User every.*$/m, ''))
    expect(sshHostConfig(noTop, 'app.internal')).toMatchObject({
      user: 'ops',
      proxyJump: 'bastion.example.org:2200',
      matched: ['*.internal !db.internal', '*']
    })
    expect(sshHostConfig(noTop, 'db.internal')).toMatchObject({ user: 'fallback', matched: ['*'] })
    expect(sshHostConfig(noTop, 'db.internal').proxyJump).toBeUndefined()
    expect(hostPatternsMatch(['web?'], 'web1')).toBe(true)
    expect(hostPatternsMatch(['web?'], 'web12')).toBe(false)
    expect(hostPatternsMatch(['!web1'], 'web2')).toBe(false)
  })

  test('a Match block never applies; comments and blank lines are skipped', () => {
    expect(sshHostConfig(parseSshConfig('Match all\n  User m\n# c\n\nHost x\n User y\n'), 'x').user).toBe('y')
  })

  test('an unnamed host gets nothing but Host * and the lines before the first Host', () => {
    const c = sshHostConfig(parseSshConfig('Host prod\n HostName p\n'), 'other')
    expect(c).toEqual({ matched: [], identityFiles: [], ignored: [] })
  })

  test('IdentityFile none and a bad Port are ignored', () => {
    const c = sshHostConfig(parseSshConfig('Host a\n Port 99999\n IdentityFile none\n Port 23\n'), 'a')
    expect(c.port).toBe(23)
    expect(c.identityFiles).toEqual([])
  })
})

describe('expandTokens', () => {
  const t = { home: '/home/ann', host: 'web1', alias: 'prod', user: 'deploy', localUser: 'ann', port: 2222 }
  test('~ and the % tokens', () => {
    expect(expandTokens('~/.ssh/id_%h_%r', t)).toBe('/home/ann/.ssh/id_web1_deploy')
    expect(expandTokens('%d/k-%n-%u-%p-%%-%x', t)).toBe('/home/ann/k-prod-ann-2222-%-%x')
    expect(expandTokens('/abs/~/k', t)).toBe('/abs/~/k')
  })
})

describe('parseProxyJump', () => {
  test('one hop with user and port; several hops and none are not followed', () => {
    expect(parseProxyJump('ops@bastion:2200')).toEqual({ user: 'ops', address: 'bastion', port: 2200 })
    expect(parseProxyJump('bastion')).toEqual({ address: 'bastion' })
    expect(parseProxyJump('[::1]:22')).toEqual({ address: '::1', port: 22 })
    expect(parseProxyJump('a,b')).toBeUndefined()
    expect(parseProxyJump('none')).toBeUndefined()
    expect(parseProxyJump('ssh://a')).toBeUndefined()
  })
})
