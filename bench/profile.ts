import { readdir, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

// Reads the .cpuprofile files `node --cpu-prof` writes and ranks functions by self
// time, so the bench can say where the gateway's main thread spends its CPU.
// Usage as a script: node dist/bench/profile.js <profile-dir-or-file> [top]

interface CallFrame { functionName: string, url: string, lineNumber: number, columnNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame }
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

export interface ProfileRow {
  readonly name: string
  readonly location: string
  readonly selfMs: number
  readonly percent: number
}

export interface ProfileSummary {
  readonly file: string
  /** Thread id from the file name: 0 is the main thread. */
  readonly thread: number
  readonly totalMs: number
  readonly idlePercent: number
  readonly top: readonly ProfileRow[]
  /** Self time grouped by package (node_modules), spotgate file, or Node core. */
  readonly byGroup: readonly ProfileRow[]
}

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))

function shortUrl (url: string): string {
  const path = url.startsWith('file://') ? fileURLToPath(url) : url
  if (path.startsWith(ROOT)) return path.slice(ROOT.length + 1)
  const modules = path.lastIndexOf('node_modules/')
  return modules === -1 ? path : path.slice(modules)
}

function groupOf (frame: CallFrame): string {
  const url = shortUrl(frame.url)
  if (url === '') return frame.functionName.startsWith('(') ? frame.functionName : '(native)'
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (modules !== null) return modules[1]
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/').slice(0, 2).join('/')}`
  return url
}

function rank (totals: Map<string, { name: string, location: string, us: number }>, totalUs: number, count: number): ProfileRow[] {
  return [...totals.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, count)
    .map((row) => ({ name: row.name, location: row.location, selfMs: row.us / 1000, percent: (100 * row.us) / totalUs }))
}

/** A span of the monotonic clock (µs) that --cpu-prof stamps samples with; samples outside it are left out. */
export interface ProfileWindow { readonly startUs: number, readonly endUs: number }

export function summariseProfile (profile: CpuProfile, file: string, count = 15, window?: ProfileWindow): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const frames = new Map<string, { name: string, location: string, us: number }>()
  const groups = new Map<string, { name: string, location: string, us: number }>()
  let totalUs = 0
  let idleUs = 0
  const { samples, timeDeltas } = profile
  let at = profile.startTime
  for (let i = 0; i < samples.length; i++) {
    at += timeDeltas[i]
    if (window !== undefined && (at < window.startUs || at > window.endUs)) continue
    // A sample's weight is the time until the next one.
    const us = Math.max(0, i + 1 < timeDeltas.length ? timeDeltas[i + 1] : 0)
    const node = byId.get(samples[i])
    if (node === undefined) continue
    const { callFrame } = node
    totalUs += us
    if (callFrame.functionName === '(idle)') idleUs += us
    const location = callFrame.url === '' ? '' : `${shortUrl(callFrame.url)}:${callFrame.lineNumber + 1}`
    const name = callFrame.functionName === '' ? '(anonymous)' : callFrame.functionName
    const key = `${name}@${location}`
    const frame = frames.get(key) ?? { name, location, us: 0 }
    frame.us += us
    frames.set(key, frame)
    const group = groupOf(callFrame)
    const entry = groups.get(group) ?? { name: group, location: '', us: 0 }
    entry.us += us
    groups.set(group, entry)
  }
  const thread = Number(/\.(\d+)\.\d+\.cpuprofile$/.exec(file)?.[1] ?? 0)
  return { file, thread, totalMs: totalUs / 1000, idlePercent: (100 * idleUs) / Math.max(1, totalUs), top: rank(frames, totalUs, count), byGroup: rank(groups, totalUs, count) }
}

/** Every profile in `dir` (one per thread), main thread first. */
export async function summariseProfiles (dir: string, count = 15, window?: ProfileWindow): Promise<ProfileSummary[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f))
  const summaries: ProfileSummary[] = []
  for (const file of files) summaries.push(summariseProfile(JSON.parse(await readFile(file, 'utf8')) as CpuProfile, file, count, window))
  return summaries.sort((a, b) => a.thread - b.thread)
}

export function formatProfile (summary: ProfileSummary): string {
  const name = summary.file.slice(summary.file.lastIndexOf('/') + 1)
  const lines = [`thread ${summary.thread}${summary.thread === 0 ? ' (main)' : ' (worker)'}, ${name}: ${(summary.totalMs / 1000).toFixed(1)} s profiled, ${summary.idlePercent.toFixed(1)}% idle`]
  lines.push('  self %   self ms  function  (location)')
  for (const row of summary.top) lines.push(`  ${row.percent.toFixed(1).padStart(6)}  ${row.selfMs.toFixed(0).padStart(8)}  ${row.name}${row.location === '' ? '' : `  (${row.location})`}`)
  lines.push('  by package / file:')
  for (const row of summary.byGroup) lines.push(`  ${row.percent.toFixed(1).padStart(6)}  ${row.selfMs.toFixed(0).padStart(8)}  ${row.name}`)
  return lines.join('\n')
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const target = process.argv[2]
  if (target === undefined) {
    console.error('usage: node dist/bench/profile.js <dir-with-cpuprofiles | file.cpuprofile> [top]')
    process.exit(2)
  }
  const count = Number(process.argv[3] ?? 15)
  const summaries = target.endsWith('.cpuprofile')
    ? [summariseProfile(JSON.parse(await readFile(target, 'utf8')) as CpuProfile, target, count)]
    : await summariseProfiles(target, count)
  for (const summary of summaries) console.log(`${formatProfile(summary)}\n`)
}
