import type { Readable, Writable } from 'node:stream'

/**
 * Sends a string or stream to a command's stdin, then EOF (with `hold`, a string without the EOF: the caller
 * ends stdin later). A command that exits early is not an error here.
 */
export function feedStdin(target: Writable, input: string | Readable | undefined, hold = false): void {
  target.on('error', () => {
    /* EPIPE when the command exits without reading all input: its exit code tells the story */
  })
  if (input === undefined) target.end()
  else if (typeof input === 'string') {
    if (hold) target.write(input)
    else target.end(input)
  } else input.pipe(target)
}
