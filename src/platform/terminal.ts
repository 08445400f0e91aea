import type { Reporter } from '../report/log.js'

/** Progress for a person at a terminal (and for GitLab job logs): stage headers, timestamps off. */
export function terminalReporter(stream: NodeJS.WritableStream = process.stderr, quiet = false): Reporter {
  const color = 'isTTY' in stream && (stream as NodeJS.WriteStream).isTTY && !process.env.NO_COLOR
  const paint = (code: string, s: string) => (color ? `\u001b[${code}m${s}\u001b[0m` : s)
  return {
    info: line => quiet || stream.write(`  ${line}\n`),
    warn: line => stream.write(`  ${paint('33', `warning: ${line}`)}\n`),
    error: line => stream.write(`  ${paint('31', line)}\n`),
    startGroup: title => quiet || stream.write(`${paint('1', `== ${title}`)}\n`),
    endGroup: () => undefined
  }
}
