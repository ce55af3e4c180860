import { mkdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { EchoCeiling, LoadShape, OrtCeiling } from './ceilings.js'
import type { ScenarioResult } from './end-to-end.js'
import { othersPercent } from './cpu.js'
import { formatProfile, type ProfileSummary } from './profile.js'

// The bench's result: every measurement, each ratio to its ceiling, and the issue's
// targets marked met or missed; printed as a table and written as JSON.

export interface Row {
  readonly name: string
  readonly requestsPerSecond: number | undefined
  readonly rowsPerSecond: number
  readonly p50Ms: number | undefined
  readonly p99Ms: number | undefined
  readonly rssBytes: number | undefined
  /** Value ÷ ceiling, and which ceiling. */
  readonly ratio?: { readonly value: number, readonly to: string }
  readonly healthP99Ms?: number
  readonly meanBatchSize?: number
  readonly failures?: number
  readonly note?: string
}

export interface Target {
  readonly id: string
  /** A few words, for the chart. */
  readonly label: string
  readonly description: string
  readonly value: number
  readonly target: number
  /** 'min': value must reach target; 'max': value must stay under it. */
  readonly kind: 'min' | 'max'
  readonly unit: 'ratio' | 'ms'
  readonly met: boolean
}

export interface BenchReport {
  readonly date: string
  readonly machine: { readonly cpus: number, readonly cpuModel: string, readonly memoryBytes: number, readonly node: string, readonly loadAverageAtStart: number, readonly onnxruntime: string, readonly redis: string }
  readonly load: LoadShape & { readonly healthProbeRate: number, readonly redisSettings: readonly string[], readonly gatewayEnv: Readonly<Record<string, string>> }
  readonly rows: readonly Row[]
  readonly targets: readonly Target[]
  readonly echo: EchoCeiling
  readonly ort: readonly OrtCeiling[]
  readonly scenarios: readonly ScenarioResult[]
  readonly profiles?: readonly ProfiledRun[]
}

/** A gateway run under --cpu-prof (slower than the measured runs), summarised per thread. */
export interface ProfiledRun {
  readonly scenario: string
  readonly label: string
  readonly requestsPerSecond: number
  readonly p99Ms: number
  readonly threads: readonly ProfileSummary[]
}

export interface Measured {
  readonly echo: EchoCeiling
  /** Every layout measured; the best per model and batch is the ceiling. */
  readonly ort: readonly OrtCeiling[]
  readonly scenarios: readonly ScenarioResult[]
}

function bestOrt (ort: readonly OrtCeiling[], model: string, batch: number): OrtCeiling {
  const candidates = ort.filter((o) => o.model === model && o.batch === batch)
  if (candidates.length === 0) throw new Error(`no onnxruntime ceiling for ${model} at batch ${batch}`)
  return candidates.reduce((a, b) => (b.rowsPerSecond > a.rowsPerSecond ? b : a))
}

function scenario (measured: Measured, id: string): ScenarioResult {
  const found = measured.scenarios.find((s) => s.id === id)
  if (found === undefined) throw new Error(`scenario ${id} was not measured`)
  return found
}

export function buildRows (measured: Measured, connections: number): { rows: Row[], targets: Target[] } {
  const { echo } = measured
  const echoRps = echo.load.requestsPerSecond
  const rows: Row[] = [{
    name: 'ceiling: Fastify JSON echo',
    requestsPerSecond: echoRps,
    rowsPerSecond: echoRps,
    p50Ms: echo.load.p50Ms,
    p99Ms: echo.load.p99Ms,
    rssBytes: echo.rssBytes,
    failures: echo.load.non2xx + echo.load.errors
  }]
  const pairs = [...new Set(measured.ort.map((o) => `${o.model}:${o.batch}`))]
  for (const pair of pairs) {
    const [model, batch] = pair.split(':')
    const best = bestOrt(measured.ort, model, Number(batch))
    rows.push({
      name: `ceiling: onnxruntime ${model} batch ${batch}`,
      requestsPerSecond: undefined,
      rowsPerSecond: best.rowsPerSecond,
      p50Ms: best.msPerRun,
      p99Ms: undefined,
      rssBytes: undefined,
      note: `${best.sessions} session(s) × ${best.intraOpThreads} thread(s); latency column = mean ms per run`
    })
  }
  for (const s of measured.scenarios) {
    const ceiling = s.model === 'mlp'
      ? { value: s.load.requestsPerSecond / bestOrt(measured.ort, 'mlp', 32).rowsPerSecond, to: 'onnxruntime mlp batch 32' }
      : { value: s.load.requestsPerSecond / echoRps, to: 'echo' }
    rows.push({
      name: `spotgate: ${s.label}`,
      requestsPerSecond: s.load.requestsPerSecond,
      rowsPerSecond: s.load.requestsPerSecond,
      p50Ms: s.load.p50Ms,
      p99Ms: s.load.p99Ms,
      rssBytes: s.rssBytes,
      ratio: ceiling,
      healthP99Ms: s.health.p99Ms,
      ...(s.meanBatchSize !== undefined && { meanBatchSize: s.meanBatchSize }),
      failures: s.load.non2xx + s.load.errors
    })
  }

  const tinyOn = scenario(measured, 'tiny-json-redis')
  const tinyOff = scenario(measured, 'tiny-json-in-process')
  const mlpBinary = scenario(measured, 'mlp-binary-redis')
  const ortMlp32 = bestOrt(measured.ort, 'mlp', 32)
  const worstHealth = measured.scenarios.reduce((a, b) => (b.health.p99Ms > a.health.p99Ms ? b : a))
  const min = (id: string, label: string, description: string, value: number, target: number): Target => ({ id, label, description, value, target, kind: 'min', unit: 'ratio', met: value >= target })
  const max = (id: string, label: string, description: string, value: number, target: number): Target => ({ id, label, description, value, target, kind: 'max', unit: 'ms', met: value < target })
  const targets = [
    min('tiny-vs-echo', 'tiny + Redis ÷ echo (req/s)', 'tiny model, Redis journal, req/s ÷ Fastify echo req/s', tinyOn.load.requestsPerSecond / echoRps, 0.5),
    max('tiny-p99', 'tiny + Redis p99 latency', `tiny model, Redis journal, p99 latency at ${connections} connections`, tinyOn.load.p99Ms, 10),
    min('journal-on-vs-off', 'Redis ÷ in-process journal (req/s)', 'tiny model, Redis journal req/s ÷ in-process journal req/s', tinyOn.load.requestsPerSecond / tinyOff.load.requestsPerSecond, 0.8),
    min('mlp-binary-vs-ort', 'MLP binary ÷ ORT batch 32 (rows/s)', 'MLP binary tensors rows/s ÷ raw onnxruntime batch-32 rows/s', mlpBinary.load.requestsPerSecond / ortMlp32.rowsPerSecond, 0.5),
    max('health-p99', '/health/ready p99 under load', `/health/ready p99 while saturated (worst run: ${worstHealth.label})`, worstHealth.health.p99Ms, 50)
  ]
  return { rows, targets }
}

const fmt = (value: number | undefined, digits = 0): string =>
  value === undefined || Number.isNaN(value) ? '–' : value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })

export function formatTable (report: BenchReport): string {
  const header = ['measurement', 'req/s', 'rows/s', 'p50 ms', 'p99 ms', 'RSS MB', 'ratio', 'of ceiling', 'health p99', 'batch', 'failed']
  const body = report.rows.map((row) => [
    row.name,
    fmt(row.requestsPerSecond),
    fmt(row.rowsPerSecond),
    fmt(row.p50Ms, 2),
    fmt(row.p99Ms, 2),
    row.rssBytes === undefined ? '–' : fmt(row.rssBytes / 2 ** 20),
    row.ratio === undefined ? '' : row.ratio.value.toFixed(2),
    row.ratio?.to ?? '',
    row.healthP99Ms === undefined ? '' : `${row.healthP99Ms.toFixed(1)} ms`,
    row.meanBatchSize === undefined ? '' : row.meanBatchSize.toFixed(1),
    row.failures === undefined ? '' : String(row.failures)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)))
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`
  const out = [line(header), `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...body.map(line)]
  out.push('')
  out.push('| target | value | goal | |')
  out.push('|:--|--:|--:|:--|')
  for (const t of report.targets) {
    const value = t.unit === 'ms' ? `${t.value.toFixed(1)} ms` : t.value.toFixed(2)
    const goal = `${t.kind === 'min' ? '≥' : '<'} ${t.unit === 'ms' ? `${t.target} ms` : t.target}`
    out.push(`| ${t.description} | ${value} | ${goal} | ${t.met ? 'met' : '**missed**'} |`)
  }
  return out.join('\n')
}

/**
 * Where the CPU went in each measured window, in percent of one core. "other processes"
 * is the machine's busy time less the bench's own processes: on a shared machine it
 * says how much the figures were disturbed.
 */
export function formatCpu (report: BenchReport): string {
  const columns = ['server process', 'gateway main thread', 'redis-server', 'load generator', 'other processes', 'CPU µs per request: server / main thread / redis']
  const pct = (value: number | undefined): string => (value === undefined ? '–' : `${value.toFixed(0)}%`)
  // CPU time per answered request does not depend on how much of the machine others took.
  const perRequest = (percent: number | undefined, rps: number): string => (percent === undefined || rps === 0 ? '–' : (percent / 100 * 1e6 / rps).toFixed(0))
  const lines = [`| CPU in the measured window (% of one core; ${report.machine.cpus} cores = ${report.machine.cpus * 100}%) | ${columns.join(' | ')} |`, `|:--|${columns.map(() => '--:').join('|')}|`]
  const { cpu } = report.echo
  const echoRps = report.echo.load.requestsPerSecond
  lines.push(`| Fastify JSON echo | ${pct(cpu['echo server'])} | – | – | ${pct(cpu['load generator'])} | ${pct(othersPercent(cpu, ['echo server', 'load generator']))} | ${perRequest(cpu['echo server'], echoRps)} / – / – |`)
  for (const o of report.ort) {
    lines.push(`| onnxruntime ${o.model} batch ${o.batch}, ${o.sessions} × ${o.intraOpThreads} thread(s) | ${pct(o.cpu.bench)} (bench) | – | – | – | ${pct(othersPercent(o.cpu, ['bench']))} | |`)
  }
  for (const s of report.scenarios) {
    const rps = s.load.requestsPerSecond
    lines.push(`| ${s.label} | ${pct(s.cpu.gateway)} | ${pct(s.cpu['gateway main thread'])} | ${pct(s.cpu['redis-server'])} | ${pct(s.cpu['load generator'])} | ${pct(othersPercent(s.cpu, ['gateway', 'redis-server', 'load generator']))} | ${perRequest(s.cpu.gateway, rps)} / ${perRequest(s.cpu['gateway main thread'], rps)} / ${perRequest(s.cpu['redis-server'], rps)} |`)
  }
  return lines.join('\n')
}

/** Where a request's time goes, from the gateway's own histograms next to what the client saw. */
export function formatBreakdown (report: BenchReport): string {
  const ms = (value: number | undefined): string => (value === undefined ? '–' : value.toFixed(2))
  const lines = [
    '| run | client mean ms | server mean ms (onRequest → reply) | batcher wait ms | onnxruntime run ms | accept script calls/s, mean ms, requests per call | complete script calls/s, mean ms, requests per call |',
    '|:--|--:|--:|--:|--:|--:|--:|'
  ]
  const seconds = report.load.warmupSeconds + report.load.durationSeconds
  const call = (c: { calls: number, meanMs: number, requestsPerCall: number } | undefined): string =>
    c === undefined ? '–' : `${Math.round(c.calls / seconds)}/s, ${c.meanMs.toFixed(2)} ms, ${c.requestsPerCall.toFixed(1)}`
  for (const s of report.scenarios) {
    const b = s.breakdown
    lines.push(`| ${s.label} | ${ms(s.load.meanMs)} | ${ms(b.serverMs)} | ${ms(b.queueMs)} | ${ms(b.inferenceMs)} | ${call(b.accept)} | ${call(b.complete)} |`)
  }
  return lines.join('\n')
}

export function formatHeader (report: BenchReport): string {
  const m = report.machine
  return [
    `spotgate bench, ${report.date}: ${m.cpus} × ${m.cpuModel}, ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB, Node ${m.node}, onnxruntime-node ${m.onnxruntime}, redis ${m.redis}, load average at start ${m.loadAverageAtStart.toFixed(1)}`,
    `load: autocannon (in its own process on the same machine), ${report.load.connections} connections, ${report.load.warmupSeconds} s warm-up + ${report.load.durationSeconds} s measured, single-row requests without Idempotency-Key; /health/ready probed at ${report.load.healthProbeRate}/s on one more connection; redis-server ${report.load.redisSettings.map((a) => (a === '' ? '""' : a)).join(' ')}`,
    ...(Object.keys(report.load.gatewayEnv).length === 0 ? [] : [`gateway environment: ${Object.entries(report.load.gatewayEnv).map(([k, v]) => `${k}=${v}`).join(' ')}`])
  ].join('\n')
}

export function formatProfiles (report: BenchReport): string {
  const parts: string[] = []
  for (const run of report.profiles ?? []) {
    parts.push(`CPU profile of the gateway (node --cpu-prof), ${run.label}, measured window only (under the profiler: ${Math.round(run.requestsPerSecond)} req/s, p99 ${run.p99Ms.toFixed(1)} ms); self time:`)
    for (const summary of run.threads) parts.push(formatProfile(summary))
  }
  return parts.join('\n\n')
}

/** The whole report as Markdown, for docs/bench/latest.md. */
export function formatMarkdown (report: BenchReport): string {
  const profiles = formatProfiles(report)
  return [
    '# spotgate benchmark: latest run',
    '',
    'Reproduce with `npm run bench` (about two minutes on 2 cores; needs `redis-server`); `npm run bench -- --profile` adds two gateway runs under `node --cpu-prof`.',
    'Raw figures: [latest.json](latest.json); chart: [latest.svg](latest.svg).',
    '',
    '```',
    formatHeader(report),
    '```',
    '',
    formatTable(report),
    '',
    formatCpu(report),
    '',
    formatBreakdown(report),
    '',
    ...(profiles === '' ? [] : ['```', profiles, '```', '']),
  ].join('\n')
}

export async function writeJson (path: string, report: BenchReport): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, `${JSON.stringify(report, null, 2)}\n`)
}
