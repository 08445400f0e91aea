/**
 * Jest globalSetup: makes sure the Debian packages the e2e tests need are installed (fails loudly if not).
 *
 * Jest loads this file outside its module registry: ts-jest compiles it, then Node's own ESM loader runs it,
 * so jest's moduleNameMapper does not apply and a static `import './packages.js'` cannot be resolved (there
 * is no packages.js on disk). tsx's tsImport loads the TypeScript module (and anything it imports) instead.
 */
import { tsImport } from 'tsx/esm/api'

type PackagesModule = typeof import('./packages.js')

export default async function globalSetup(): Promise<void> {
  // a Windows runner runs the unit tests only (jest.config.js leaves e2e/ out there)
  if (process.platform === 'win32') return
  const started = Date.now()
  const { CORE_PACKAGES, CONTAINER_PACKAGES, DB_PACKAGES, ensureDebianPackages } = (await tsImport(
    './packages.ts',
    import.meta.url
  )) as PackagesModule
  // one apt-get update, then one install of everything missing
  ensureDebianPackages([...CORE_PACKAGES, ...DB_PACKAGES, ...CONTAINER_PACKAGES])
  if (process.env.E2E_DEBUG) console.log(`[e2e globalSetup] packages checked in ${Date.now() - started} ms`)
}
