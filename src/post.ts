import { runPost } from './platform/github.js'

await runPost()
