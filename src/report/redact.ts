/** Replaces every secret (and each of its lines, for multi-line keys) with ***. */
export class Redactor {
  private readonly needles: string[]

  constructor(secrets: readonly string[]) {
    const parts = new Set<string>()
    for (const s of secrets) {
      if (s.length >= 4) parts.add(s)
      for (const line of s.split(/\r?\n/))
        if (line.trim().length >= 8 && !/^-+(BEGIN|END) /.test(line.trim())) parts.add(line.trim())
    }
    this.needles = [...parts].sort((a, b) => b.length - a.length)
  }

  add(secret: string): void {
    for (const n of new Redactor([secret]).needles) if (!this.needles.includes(n)) this.needles.push(n)
    this.needles.sort((a, b) => b.length - a.length)
  }

  redact(text: string): string {
    let out = text
    for (const n of this.needles) if (out.includes(n)) out = out.split(n).join('***')
    return out
  }
}
