#!/usr/bin/env node
// Sizes for docs/architecture.md: the largest files and functions of src/ and the cycles between its folders.
// `node scripts/size-report.mjs [--src=DIR] [--top=N]` (DIR: e.g. the src/ of an older checkout).
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import ts from 'typescript'
import { collect, cycles } from './check-deps.mjs'

const src = resolve(process.argv.find(a => a.startsWith('--src='))?.slice(6) ?? 'src')
const top = Number(process.argv.find(a => a.startsWith('--top='))?.slice(6) ?? 3)

const files = dir =>
  readdirSync(dir).flatMap(n => {
    const p = join(dir, n)
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : []
  })

const sizes = []
const functions = []
for (const file of files(src)) {
  const text = readFileSync(file, 'utf8')
  const name = relative(src, file)
  sizes.push({ name, lines: text.split('\n').length - (text.endsWith('\n') ? 1 : 0) })
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
  const visit = node => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const from = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line
      const to = sf.getLineAndCharacterOfPosition(node.end).line
      const id = node.name?.getText(sf) ?? ts.getNameOfDeclaration(node.parent)?.getText(sf) ?? '(anonymous)'
      functions.push({ name: `${name} ${id}`, lines: to - from + 1 })
    }
    ts.forEachChild(node, visit)
  }
  visit(sf)
}
const byLines = (a, b) => b.lines - a.lines
console.log('largest files (lines):')
for (const f of sizes.sort(byLines).slice(0, top)) console.log(`  ${f.lines}  ${f.name}`)
console.log('largest functions (lines, nested functions counted in their parent too):')
for (const f of functions.sort(byLines).slice(0, top)) console.log(`  ${f.lines}  ${f.name}`)

const { edges: top1 } = collect()
const loops = cycles(top1)
const pairs = new Set(top1.map(e => `${e.from}>${e.to}`))
const mutual = [...pairs].filter(
  p => p.split('>')[0] < p.split('>')[1] && pairs.has(p.split('>').reverse().join('>'))
)
console.log(`folder cycles (strongly connected groups of top-level folders): ${loops.length}`)
for (const c of loops) console.log(`  ${c.join(' <-> ')}`)
console.log(
  `folder pairs that import each other: ${mutual.length}${mutual.length ? `  (${mutual.map(p => p.replace('>', ' <-> ')).join(', ')})` : ''}`
)
