/** Jest in ESM mode with ts-jest; e2e tests start real sshd servers (see __tests__/e2e/harness). */
export default {
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
