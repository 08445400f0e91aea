/** Exit codes, the contract scripts rely on (README "Exit codes"). */
export const ExitCode = {
  ok: 0,
  failure: 1,
  badInput: 2,
  failedNothingChanged: 3,
  rolledBack: 4,
  rollbackFailed: 5
} as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** Bad input (config, flags, names): raised before anything on a server changes. Exit 2. */
export class ConfigError extends Error {
  readonly exitCode = ExitCode.badInput
  constructor(
    message: string,
    readonly problems: string[] = [message]
  ) {
    super(message)
    this.name = 'ConfigError'
  }
}
