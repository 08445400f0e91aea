/** Jest in ESM mode with ts-jest; e2e tests start real sshd servers (see __tests__/e2e/harness). */

/**
 * Left out on a Windows runner (the CI's windows job runs the unit tests): each runs the host side's POSIX sh
 * scripts or OpenSSH tools, which run on Linux hosts, never on the runner. Single tests that need POSIX use
 * posixOnly (__tests__/unit/helpers/platform.ts).
 */
const POSIX_ONLY = [
  'e2e/', // real sshd, databases, nginx: Debian packages
  'unit/backup/engines.test.ts', // backup scripts run in /bin/sh with tar and fake tools (chmod +x)
  'unit/backup/script.test.ts', // backup scripts in /bin/sh, symlinks, tar
  'unit/commands/', // host scripts run in sh as sshd runs them (helpers/shell.ts runRemote)
  'unit/pipeline/bluegreen.test.ts', // blue-green host scripts through the local transport
  'unit/plan/golden.test.ts', // golden plans hold POSIX paths of the runner
  'unit/transport/hostkeys.test.ts', // compares with ssh-keygen
  'unit/transport/jump.test.ts' // ssh-keygen keys
]
const onWindows =
  process.platform === 'win32'
    ? {
        testPathIgnorePatterns: [
          '/node_modules/',
          ...POSIX_ONLY.map(p => p.replace(/[.]/g, '\\.').replace(/\//g, '[\\\\/]'))
        ]
      }
    : {}

export default {
  ...onWindows,
  preset: 'ts-jest/presets/default-esm',
  testEnvironment: 'node',
  roots: ['<rootDir>/__tests__'],
  testMatch: ['**/*.test.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }] },
  globalSetup: '<rootDir>/__tests__/e2e/harness/global-setup.ts',
  testTimeout: 120000,
  maxWorkers: 2,
  verbose: true
}
