#!/usr/bin/env node
// The dependency rule for src/: folders form layers, and an import may only point at the same folder or a
// folder in a lower layer. Fails (exit 1) on any import against the order and on any cycle between folders.
// Run by `npm run lint` (and so by .ci/run). `--graph` prints the folder graph. docs/architecture.md explains.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

// Lowest first. A folder may import its own files and any folder in an earlier layer, nothing else.
// Folders in one layer may not import each other. '.' is the entry files at src/ (index.ts, post.ts, cli.ts).
export const LAYERS = [
  ['core'],
  ['commands'],
  ['transport'],
  ['backup-engines'],
  ['config'],
  ['report'],
  ['release'],
  ['host'],
  ['backup'],
  ['pipeline'],
  ['engine'],
  ['notify'],
  ['flows'],
  ['platform'],
  ['.']
]

// backup-engines/ is backup's pure half (the engines and their registry, the `backup:` schema, connections,
// backup names, retention, the config-time check): config/ validates with it, so it sits below config/.
// backup/ is the other half: the operations on a host (take, list, verify, restore, prune, download, probe).

// platform/ is the one place that knows GitHub and GitLab: only it (and the entry files) may import these
// packages or read the CI platforms' environment variables.
export const PACKAGES_ONLY_IN = { '@actions/': ['platform', '.'] }
export const CI_NAMES = /\b(?:GITHUB|GITLAB)_[A-Z_]+|\bCI_[A-Z][A-Z_]+/
export const CI_NAMES_ONLY_IN = ['platform', '.']

const here = dirname(fileURLToPath(import.meta.url))
const src = resolve(process.argv.find(a => a.startsWith('--src='))?.slice(6) ?? join(here, '..', 'src'))

const IMPORT_RE =
  /^[ \t]*(?:import|export)\s+(?:type\s+)?(?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?|[\w$]+)\s+from\s*['"]([^'"]+)['"]/gm
const BARE_RE = /^[ \t]*import\s*['"]([^'"]+)['"]/gm
const DYNAMIC_RE = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g

function files(dir) {
  return readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return files(path)
    return /\.(ts|mts|js|mjs)$/.test(name) && !name.endsWith('.d.ts') ? [path] : []
  })
}

function folderOf(file) {
  const rel = relative(src, file).split(sep)
  return rel.length === 1 ? '.' : rel[0]
}

export function specifiers(text) {
  const out = []
  for (const re of [IMPORT_RE, BARE_RE, DYNAMIC_RE]) for (const m of text.matchAll(re)) out.push(m[1])
  return out
}

export function collect() {
  const edges = [] // { from, to, file, spec }
  const packages = [] // { folder, file, spec }
  const ciNames = [] // { folder, file, name }
  for (const file of files(src)) {
    const from = folderOf(file)
    const text = readFileSync(file, 'utf8')
    const ci = text.match(CI_NAMES)
    if (ci) ciNames.push({ folder: from, file: relative(src, file), name: ci[0] })
    for (const spec of specifiers(text)) {
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec)
        if (!target.startsWith(src + sep)) continue
        const to = folderOf(target)
        if (to !== from) edges.push({ from, to, file: relative(src, file), spec })
      } else packages.push({ folder: from, file: relative(src, file), spec })
    }
  }
  return { edges, packages, ciNames }
}

export function cycles(edges) {
  const graph = new Map()
  for (const { from, to } of edges) {
    if (!graph.has(from)) graph.set(from, new Set())
    graph.get(from).add(to)
  }
  // Tarjan's strongly connected components: every component with more than one folder is a cycle.
  let index = 0
  const stack = []
  const info = new Map()
  const found = []
  const visit = v => {
    info.set(v, { index, low: index, on: true })
    index++
    stack.push(v)
    for (const w of graph.get(v) ?? []) {
      if (!info.has(w)) {
        visit(w)
        info.get(v).low = Math.min(info.get(v).low, info.get(w).low)
      } else if (info.get(w).on) info.get(v).low = Math.min(info.get(v).low, info.get(w).index)
    }
    if (info.get(v).low === info.get(v).index) {
      const component = []
      let w
      do {
        w = stack.pop()
        info.get(w).on = false
        component.push(w)
      } while (w !== v)
      if (component.length > 1) found.push(component.sort())
    }
  }
  for (const v of graph.keys()) if (!info.has(v)) visit(v)
  return found
}

export function violations(edges, packages, ciNames = []) {
  const rank = new Map(LAYERS.flatMap((layer, i) => layer.map(f => [f, i])))
  const out = []
  for (const e of edges) {
    const a = rank.get(e.from)
    const b = rank.get(e.to)
    if (a === undefined)
      out.push(`${e.file}: folder src/${e.from}/ is not in the layer order (scripts/check-deps.mjs)`)
    else if (b === undefined)
      out.push(`${e.file}: imports '${e.spec}', folder src/${e.to}/ is not in the layer order`)
    else if (b >= a)
      out.push(`${e.file}: imports '${e.spec}': ${e.from}/ may not depend on ${e.to}/ (layer order)`)
  }
  for (const p of packages)
    for (const [prefix, allowed] of Object.entries(PACKAGES_ONLY_IN))
      if (p.spec.startsWith(prefix) && !allowed.includes(p.folder))
        out.push(`${p.file}: imports '${p.spec}': only ${allowed.join(', ')}/ may import ${prefix}*`)
  for (const c of ciNames)
    if (!CI_NAMES_ONLY_IN.includes(c.folder))
      out.push(`${c.file}: names ${c.name}: only ${CI_NAMES_ONLY_IN.join(', ')}/ may know GitHub or GitLab`)
  return [...new Set(out)]
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { edges, packages, ciNames } = collect()
  if (process.argv.includes('--graph')) {
    const seen = new Map()
    for (const e of edges) seen.set(`${e.from} -> ${e.to}`, (seen.get(`${e.from} -> ${e.to}`) ?? 0) + 1)
    for (const [edge, n] of [...seen].sort()) console.log(`${edge} (${n})`)
  }
  const loops = cycles(edges)
  const bad = violations(edges, packages, ciNames)
  for (const c of loops) console.error(`cycle between folders: ${c.join(' <-> ')}`)
  for (const v of bad) console.error(v)
  if (process.argv.includes('--count')) console.log(`folder cycles: ${loops.length}`)
  if (loops.length || bad.length) {
    console.error(
      `check-deps: ${loops.length} folder cycle(s), ${bad.length} import(s) against the layer order`
    )
    process.exit(1)
  }
  console.log(
    `check-deps: src/ imports follow the layer order (${edges.length} cross-folder imports, no cycles)`
  )
}
