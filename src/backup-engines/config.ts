import { z } from 'zod'
import { ENGINE_IDS } from './index.js'

/**
 * `backup:` in safe-deploy.yml. A backup is a set of files under <root>/backups sharing one name,
 * `<app>_YYYYMMDD_HHMMSS` (UTC): one artifact per database and one for files, plus a `.sha256` manifest.
 */
const database = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,32}$/)
      .optional()
      .describe('Label for this database in artifact names when there are several'),
    engine: z.enum(ENGINE_IDS),
    url: z.string().optional().describe('postgres://user:pass@host:5432/db or mysql://...; use env:NAME'),
    host: z.string().optional(),
    port: z.number().int().min(1).max(65535).optional(),
    user: z.string().optional(),
    password: z.string().optional().describe('use env:NAME; sent over stdin, never argv'),
    database: z.string().optional(),
    path: z
      .string()
      .optional()
      .describe('sqlite: the database file (absolute, or relative to the deploy root)'),
    container: z
      .string()
      .optional()
      .describe('compose service to run the dump in: docker compose exec -T <service>'),
    compose_dir: z
      .string()
      .optional()
      .describe('directory of the compose project on the host (default: current release)'),
    compress: z
      .enum(['gzip', 'zstd', 'none'])
      .optional()
      .describe('mysql/sqlite/files compression (default gzip)')
  })
  .strict()

const retentionSchema = z
  .object({
    daily: z.number().int().min(0).max(366).default(7),
    weekly: z.number().int().min(0).max(520).default(4),
    monthly: z.number().int().min(0).max(1200).default(12)
  })
  .strict()

export const backupSchema = z
  .object({
    enabled: z.boolean().default(true),
    dir: z
      .string()
      .default('backups')
      .describe('where backups go on the primary, relative to the deploy root'),
    databases: z.array(database).default([]),
    files: z.array(z.string()).default([]).describe('files/dirs to archive, relative to the deploy root'),
    encrypt: z
      .object({
        recipients: z
          .array(z.string().regex(/^age1[0-9a-z]+$/, 'expected an age public key (age1...)'))
          .min(1),
        identity: z.string().optional().describe('age identity for verify/restore (use env:NAME)')
      })
      .strict()
      .optional(),
    retention: retentionSchema.default({ daily: 7, weekly: 4, monthly: 12 }),
    sign_key: z
      .string()
      .optional()
      .describe(
        'HMAC-SHA256 key (use env:NAME, 16+ characters): every backup gets a signature (NAME.sig); verify and restore refuse a backup without a valid one'
      ),
    download: z.boolean().default(false).describe('copy the backup to the runner next to the log')
  })
  .strict()

export type BackupConfig = z.output<typeof backupSchema>
export type DatabaseConfig = z.output<typeof database>
export type RetentionPolicy = z.output<typeof retentionSchema>
