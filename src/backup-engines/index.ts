import { describeDatabase, type ArtifactFormat, type BackupEngine } from './engine.js'
import type { Target } from './target.js'
import { files } from './files.js'
import { mysql } from './mysql.js'
import { postgres } from './postgres.js'
import { sqlite } from './sqlite.js'

/** The backup engines, by their name in `backup.databases[].engine`. A new engine is one line here. */
export const ENGINES = { postgres, mysql, sqlite } satisfies Record<string, BackupEngine>

export type EngineId = keyof typeof ENGINES
export const ENGINE_IDS = Object.keys(ENGINES) as [EngineId, ...EngineId[]]

export function engineOf(id: EngineId): BackupEngine {
  return ENGINES[id]
}

/** Every kind of file a backup holds: one per engine, and the files archive. */
export type ArtifactKind = EngineId | 'files'

export const FORMATS: Record<ArtifactKind, ArtifactFormat> = { ...ENGINES, files }

export function formatOf(kind: ArtifactKind): ArtifactFormat {
  return FORMATS[kind]
}

/** `PostgreSQL database "app"`: how errors and logs name a target. */
export function describeTarget(t: Target): string {
  return describeDatabase(engineOf(t.engine).title, t)
}
