import { ExitCode } from './exit.js'

/** A failure in a named stage, on a named host when it is host-specific. */
export class StageError extends Error {
  constructor(
    readonly stage: string,
    message: string,
    readonly host?: string,
    readonly exitCode: number = ExitCode.failedNothingChanged
  ) {
    super(message)
    this.name = 'StageError'
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
