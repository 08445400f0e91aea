import { describe, expect, test } from '@jest/globals'
import { Layout } from '../../../src/commands/layout.js'

describe('Layout', () => {
  test('names every place under the deploy root', () => {
    const l = new Layout('/srv/ledger')
    expect({ ...l }).toEqual({
      root: '/srv/ledger',
      releases: '/srv/ledger/releases',
      current: '/srv/ledger/current',
      shared: '/srv/ledger/shared',
      meta: '/srv/ledger/.safe-deploy',
      lock: '/srv/ledger/.safe-deploy/lock',
      history: '/srv/ledger/.safe-deploy/history.jsonl',
      hostLog: '/srv/ledger/.safe-deploy/deploy.log'
    })
    expect(l.release('20261121T193000Z-3f2a1c9')).toBe('/srv/ledger/releases/20261121T193000Z-3f2a1c9')
  })

  test('trailing slashes on the root do not double up', () => {
    const l = new Layout('/srv/ledger///')
    expect(l.root).toBe('/srv/ledger///')
    expect(l.releases).toBe('/srv/ledger/releases')
    expect(l.current).toBe('/srv/ledger/current')
    expect(l.lock).toBe('/srv/ledger/.safe-deploy/lock')
    expect(l.release('r')).toBe('/srv/ledger/releases/r')
  })

  test('a root with spaces and quotes is kept as it is (quoting is the builders’ job)', () => {
    const l = new Layout("/srv/my 'app' $(x)")
    expect(l.shared).toBe("/srv/my 'app' $(x)/shared")
    expect(l.history).toBe("/srv/my 'app' $(x)/.safe-deploy/history.jsonl")
  })
})
