import { runCli } from './platform/cli.js'

// A cancelled CI job sends SIGINT, then SIGTERM: both ask the run to stop at once and undo what it did.
const controller = new AbortController()
let signals = 0
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    signals++
    // `logs` changes nothing: Ctrl-C just ends it
    if (process.argv[2] !== 'logs')
      process.stderr.write(
        `\nsafe-deploy: ${sig} received; stopping and undoing what this run changed${signals > 1 ? ' (already stopping)' : ''}\n`
      )
    controller.abort(new Error(sig))
  })
}

const code = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal
})
process.exitCode = code
