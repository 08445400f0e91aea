// Writes safe-deploy.schema.json from the zod schema, for editors (yaml-language-server) and docs.
import { writeFileSync } from 'node:fs'
import { z } from 'zod'
import { configSchema } from '../src/config/schema.js'

const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Record<
  string,
  unknown
>
schema.title = 'safe-deploy configuration'
writeFileSync('safe-deploy.schema.json', JSON.stringify(schema, null, 2) + '\n')
console.log('wrote safe-deploy.schema.json')
