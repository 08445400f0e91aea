/**
 * The one quoting function for POSIX sh. Every value that is interpolated into a shell command that runs
 * on a host goes through `sh()`: it wraps the value in single quotes, where nothing is special, and writes
 * each embedded single quote as '\'' (close, escaped quote, reopen). Newlines, `$()`, backticks and spaces
 * all stay literal. NUL cannot be passed through a shell at all, so it is refused. It is the POSIX dialect's
 * `quote` (src/commands/dialect.ts).
 */
export function sh(value: string | number): string {
  const text = String(value)
  if (text.includes('\0')) throw new Error('a value passed to the shell contains a NUL byte')
  if (text !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) return text
  return `'${text.replace(/'/g, `'\\''`)}'`
}

/** Joins words into one command line, quoting each. */
export function shJoin(words: readonly (string | number)[]): string {
  return words.map(sh).join(' ')
}
