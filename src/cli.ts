import pkg from '../package.json' with { type: 'json' }

// `safe-deploy --version` answers before the rest of the bundle is evaluated (about 0.1 s of a cold start);
// every other command loads the CLI. webpackMode "eager" keeps that module inside this one bundle file.
const args = process.argv.slice(2)
if (args.length === 1 && args[0] === '--version') {
  process.stdout.write(`${pkg.version}\n`)
} else {
  await main()
}

async function main(): Promise<void> {
  const { runCli } = await import(/* webpackMode: "eager" */ './platform/cli.js')

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

  const code = await runCli(args, {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    signal: controller.signal
  })
  process.exitCode = code
}
