import { mkdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { LoadShape } from './ceilings.js'
import { othersPercent } from './cpu.js'
import type { ScenarioResult } from './end-to-end.js'
import { bestOrt, microsPerRequest, type Measured } from './measured.js'
import { formatProfile, type ProfileSummary } from './profile.js'
import { formatGoal, formatTargetValue, type Target } from './targets.js'

// The bench's result: every measurement, each ratio to its ceiling, and the issue's
// targets marked met or missed; printed as tables and written as JSON and Markdown.

export interface Row {
  readonly name: string
  readonly kind: 'ceiling' | 'spotgate'
  /** The model served or run; undefined for the echo route. */
  readonly model: string | undefined
  readonly requestsPerSecond: number | undefined
  readonly rowsPerSecond: number
  readonly p50Ms: number | undefined
  readonly p99Ms: number | undefined
  /** p99 ÷ the echo route's p99 in this run. */
  readonly p99VsEcho?: number
  readonly rssBytes: number | undefined
  /** Value ÷ ceiling, and which ceiling. */
  readonly ratio?: { readonly value: number, readonly to: string }
  readonly healthP99Ms?: number
  readonly meanBatchSize?: number
  readonly failures?: number
  readonly note?: string
}

export interface BenchReport extends Measured {
  readonly date: string
  readonly machine: { readonly cpus: number, readonly cpuModel: string, readonly memoryBytes: number, readonly node: string, readonly loadAverageAtStart: number, readonly onnxruntime: string, readonly redis: string }
  readonly load: LoadShape & { readonly healthProbeRate: number, readonly redisSettings: readonly string[], readonly gatewayEnv: Readonly<Record<string, string>> }
  /** Scenario ids when --only chose some; absent for a full run. */
  readonly only?: readonly string[]
  readonly rows: readonly Row[]
  readonly targets: readonly Target[]
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

/** What a spotgate run is compared with: the echo route for the tiny model, else the model's best raw onnxruntime run. */
function ceilingRatio (measured: Measured, s: ScenarioResult, tinyModel: string): Row['ratio'] {
  if (s.model === tinyModel) return { value: s.load.requestsPerSecond / measured.echo.load.requestsPerSecond, to: 'echo' }
  const best = bestOrt(measured.ort, s.model)
  return best === undefined ? undefined : { value: s.load.requestsPerSecond / best.rowsPerSecond, to: `onnxruntime ${s.model} batch ${best.batch}` }
}

export function buildRows (measured: Measured, tinyModel: string): Row[] {
  const { echo } = measured
  const echoRps = echo.load.requestsPerSecond
  const rows: Row[] = [{
    name: 'ceiling: Fastify JSON echo',
    kind: 'ceiling',
    model: undefined,
    requestsPerSecond: echoRps,
    rowsPerSecond: echoRps,
    p50Ms: echo.load.p50Ms,
    p99Ms: echo.load.p99Ms,
    rssBytes: echo.rssBytes,
    failures: echo.load.non2xx + echo.load.errors
  }]
  const pairs = [...new Map(measured.ort.map((o) => [`${o.model}:${o.batch}`, o])).values()]
  for (const { model, batch } of pairs) {
    const best = bestOrt(measured.ort, model, batch) as NonNullable<ReturnType<typeof bestOrt>>
    rows.push({
      name: `ceiling: onnxruntime ${model} batch ${batch}`,
      kind: 'ceiling',
      model,
      requestsPerSecond: undefined,
      rowsPerSecond: best.rowsPerSecond,
      p50Ms: best.msPerRun,
      p99Ms: undefined,
      rssBytes: undefined,
      note: `${best.sessions} session(s) × ${best.intraOpThreads} thread(s); latency column = mean ms per run`
    })
  }
  for (const s of measured.scenarios) {
    const ratio = ceilingRatio(measured, s, tinyModel)
    rows.push({
      name: `spotgate: ${s.label}`,
      kind: 'spotgate',
      model: s.model,
      requestsPerSecond: s.load.requestsPerSecond,
      rowsPerSecond: s.load.requestsPerSecond,
      p50Ms: s.load.p50Ms,
      p99Ms: s.load.p99Ms,
      p99VsEcho: s.load.p99Ms / echo.load.p99Ms,
      rssBytes: s.rssBytes,
      ...(ratio !== undefined && { ratio }),
      healthP99Ms: s.health.p99Ms,
      ...(s.meanBatchSize !== undefined && { meanBatchSize: s.meanBatchSize }),
      failures: s.load.non2xx + s.load.errors
    })
  }
  return rows
}

const fmt = (value: number | undefined, digits = 0): string =>
  value === undefined || Number.isNaN(value) ? '–' : value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })

/** A Markdown table, padded so it also reads as plain text; the first column left-aligned, the others right. */
function table (header: readonly string[], body: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)))
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`
  return [line(header), `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...body.map(line)].join('\n')
}

export function formatTable (report: BenchReport): string {
  const header = ['measurement', 'req/s', 'rows/s', 'p50 ms', 'p99 ms', 'p99 ÷ echo p99', 'RSS MB', 'ratio', 'of ceiling', 'health p99', 'batch', 'failed']
  return table(header, report.rows.map((row) => [
    row.name,
    fmt(row.requestsPerSecond),
    fmt(row.rowsPerSecond),
    fmt(row.p50Ms, 2),
    fmt(row.p99Ms, 2),
    row.p99VsEcho === undefined ? '' : row.p99VsEcho.toFixed(2),
    row.rssBytes === undefined ? '–' : fmt(row.rssBytes / 2 ** 20),
    row.ratio === undefined ? '' : row.ratio.value.toFixed(2),
    row.ratio?.to ?? '',
    row.healthP99Ms === undefined ? '' : `${row.healthP99Ms.toFixed(1)} ms`,
    row.meanBatchSize === undefined ? '' : row.meanBatchSize.toFixed(1),
    row.failures === undefined ? '' : String(row.failures)
  ]))
}

/** The issue's targets, each marked met, missed or not measured. */
export function formatTargets (report: BenchReport): string {
  const mark = { met: 'met', missed: '**missed**', 'not measured': 'not measured' } as const
  const lines = ['| target | value | goal | |', '|:--|--:|--:|:--|']
  for (const t of report.targets) lines.push(`| ${t.description} | ${formatTargetValue(t.unit, t.value)} | ${formatGoal(t)} | ${mark[t.status]} |`)
  return lines.join('\n')
}

const pct = (value: number | undefined): string => (value === undefined ? '–' : `${value.toFixed(0)}%`)
const micros = (value: number | undefined): string => (value === undefined ? '–' : value.toFixed(0))
const SCENARIO_PROCESSES = ['gateway', 'redis-server', 'load generator'] as const

/**
 * Where the CPU went in each measured window, in percent of one core. "other processes"
 * is the machine's busy time less the bench's own processes: on a shared machine it
 * says how much the figures were disturbed.
 */
export function formatCpu (report: BenchReport): string {
  const header = [`CPU in the measured window (% of one core; ${report.machine.cpus} cores = ${report.machine.cpus * 100}%)`, 'server process', 'main thread', 'model workers', 'redis-server', 'load generator', 'other processes']
  const { cpu } = report.echo
  const body = [['Fastify JSON echo', pct(cpu['echo server']), '–', '–', '–', pct(cpu['load generator']), pct(othersPercent(cpu, ['echo server', 'load generator']))]]
  for (const o of report.ort) {
    body.push([`onnxruntime ${o.model} batch ${o.batch}, ${o.sessions} × ${o.intraOpThreads} thread(s)`, `${pct(o.cpu.bench)} (bench)`, '–', '–', '–', '–', pct(othersPercent(o.cpu, ['bench']))])
  }
  for (const s of report.scenarios) {
    body.push([s.label, pct(s.cpu.gateway), pct(s.cpu['gateway main thread']), pct(s.cpu['model workers']), pct(s.cpu['redis-server']), pct(s.cpu['load generator']), pct(othersPercent(s.cpu, SCENARIO_PROCESSES))])
  }
  return table(header, body)
}

/** CPU time per answered request: it does not depend on how much of the machine others took. */
export function formatCpuPerRequest (report: BenchReport): string {
  const header = ['CPU µs per answered request', 'server process', 'main thread', 'model workers', 'redis-server', 'load generator', 'all of these']
  const { cpu } = report.echo
  const echoRps = report.echo.load.requestsPerSecond
  const body = [['Fastify JSON echo', micros(microsPerRequest(cpu['echo server'], echoRps)), '–', '–', '–', micros(microsPerRequest(cpu['load generator'], echoRps)),
    micros(microsPerRequest((cpu['echo server'] ?? 0) + (cpu['load generator'] ?? 0), echoRps))]]
  for (const s of report.scenarios) {
    const rps = s.load.requestsPerSecond
    const per = (name: string): string => micros(microsPerRequest(s.cpu[name], rps))
    const all = SCENARIO_PROCESSES.reduce((sum, name) => sum + (s.cpu[name] ?? 0), 0)
    body.push([s.label, per('gateway'), per('gateway main thread'), per('model workers'), per('redis-server'), per('load generator'), micros(microsPerRequest(all, rps))])
  }
  return table(header, body)
}

/**
 * The journal's cost per request on each kind of Redis, from the tiny-model runs (where
 * the journal is most of the work): Redis CPU (every redis-server of a cluster, replicas
 * included) and the gateway's main thread per answered request, next to throughput.
 */
export function formatJournalCost (report: BenchReport): string | undefined {
  const runs = report.scenarios.filter((s) => s.id.startsWith('tiny-json-') && !s.id.endsWith('-threads'))
  if (!runs.some((s) => s.journal === 'cluster')) return undefined
  const header = ['journal cost per request (tiny model)', 'req/s', 'p99 ms', 'redis-server CPU µs', 'of which replicas', 'primaries: req/s per core', 'main thread CPU µs', 'server process CPU µs']
  const body = runs.map((s) => {
    const rps = s.load.requestsPerSecond
    const primaries = microsPerRequest((s.cpu['redis-server'] ?? 0) - (s.cpu['redis replicas'] ?? 0), rps)
    return [s.label, fmt(rps), s.load.p99Ms.toFixed(1), micros(microsPerRequest(s.cpu['redis-server'], rps)), s.cpu['redis replicas'] === undefined ? '–' : micros(microsPerRequest(s.cpu['redis replicas'], rps)),
      primaries === undefined || primaries <= 0 ? '–' : fmt(1e6 / primaries), micros(microsPerRequest(s.cpu['gateway main thread'], rps)), micros(microsPerRequest(s.cpu.gateway, rps))]
  })
  return [
    table(header, body),
    '',
    'A cluster\'s redis-server CPU is the sum over its six processes (three primaries, three replicas: replication is part of the cost). On one machine the shards share its cores, so the cluster cannot show more throughput here. "primaries: req/s per core" is how many requests one core of primary CPU journals at this cost: each request touches one shard, so a cluster of N shards, a core each, journals about N times that.'
  ].join('\n')
}

/** Commands Lua scripts call; INFO commandstats counts their time inside EVALSHA's as well. */
const SCRIPTED = ['set', 'getrange', 'zadd', 'zrem', 'pexpire', 'pttl', 'exists', 'time', 'publish', 'hmget', 'hset', 'get', 'del', 'xadd', 'xack', 'xdel', 'zscore']

/**
 * Where one redis-server's CPU per request goes (one-node runs): executing the journal's
 * scripts (and, inside them, the commands they call), other commands, and the rest, which
 * is reading requests, writing replies and the append-only file.
 */
export function formatRedisTime (report: BenchReport): string | undefined {
  const runs = report.scenarios.filter((s) => s.redisCommandUsec !== undefined && s.load.ok > 0)
  if (runs.length === 0) return undefined
  const header = ['redis-server µs per answered request (one node)', 'CPU', 'scripts (EVALSHA)', 'of which SET', 'GETRANGE', 'ZADD + ZREM', 'Lua and the script call itself', 'other commands', 'network, parsing, AOF']
  const body = runs.map((s) => {
    const usec = s.redisCommandUsec ?? {}
    const requests = s.load.requestsPerSecond * s.metricsWindowSeconds
    const per = (value: number): number => value / requests
    const scripts = per(usec.evalsha ?? 0)
    const inside = SCRIPTED.reduce((sum, name) => sum + (usec[name] ?? 0), 0)
    const direct = Object.entries(usec).filter(([name]) => name !== 'evalsha' && !SCRIPTED.includes(name)).reduce((sum, [, value]) => sum + value, 0)
    const cpu = microsPerRequest(s.cpu['redis-server'], s.load.requestsPerSecond)
    return [s.label, micros(cpu), scripts.toFixed(1), per(usec.set ?? 0).toFixed(1), per(usec.getrange ?? 0).toFixed(1), per((usec.zadd ?? 0) + (usec.zrem ?? 0)).toFixed(1),
      Math.max(0, scripts - per(inside)).toFixed(1), per(direct).toFixed(1), cpu === undefined ? '–' : Math.max(0, cpu - scripts - per(direct)).toFixed(0)]
  })
  return [
    table(header, body),
    '',
    'From INFO commandstats over the measured window (reset at its start) next to the process\'s CPU time: a script\'s time includes the commands it calls, whose own columns are part of it. "Other commands" are the health probes, lease renewals and replay-stream reads. The last column is the rest of the CPU: reading commands, writing replies, the append-only file.'
  ].join('\n')
}

/** Rows per onnxruntime run and how much of the window the model workers spent running. */
export function formatBatching (report: BenchReport): string {
  const header = ['batching (gateway /metrics, measured window)', 'runs/s', 'rows per run', 'runs by rows per run', 'mean run ms', 'instances', 'workers busy', 'workers CPU']
  const body = report.scenarios.map((s) => {
    const b = s.batching
    const share = (value: number | undefined): string => (value === undefined ? '–' : `${(100 * value).toFixed(0)}%`)
    const workersCpu = s.cpu['model workers'] === undefined || b.instances === 0 ? undefined : s.cpu['model workers'] / 100 / b.instances
    const distribution = b.distribution.map((d) => `${d.rows}: ${(100 * d.runs / b.runs).toFixed(0)}%`).join(', ')
    const estimated = b.runTimeSource === 'per request' ? '≈ ' : ''
    return [s.label, fmt(b.runs / s.metricsWindowSeconds), b.meanRowsPerRun === undefined ? '–' : b.meanRowsPerRun.toFixed(1), distribution === '' ? '–' : distribution,
      b.meanRunMs === undefined ? '–' : `${estimated}${b.meanRunMs.toFixed(2)}`, String(b.instances), b.busyShare === undefined ? '–' : `${estimated}${share(b.busyShare)}`, share(workersCpu)]
  })
  return [
    table(header, body),
    '',
    'workers busy: sum of run times ÷ (window × instances), from spotgate_inference_duration_seconds; workers CPU: the model instances\' CPU time (their processes or worker threads, from /proc) ÷ (window × instances).',
    ...(report.scenarios.some((s) => s.batching.runTimeSource === 'per request')
      ? ['≈: the gateway observes spotgate_inference_duration_seconds once per request (each request sees its batch\'s run), so the sum over runs is estimated as the mean per request × runs; it leans towards the longer runs of bigger batches.']
      : [])
  ].join('\n')
}

/** Where a request's time goes, from the gateway's own histograms next to what the client saw. */
export function formatBreakdown (report: BenchReport): string {
  const ms = (value: number | undefined): string => (value === undefined ? '–' : value.toFixed(2))
  const header = ['run', 'client mean ms', 'server mean ms (onRequest → reply)', 'batcher wait ms', 'onnxruntime run ms', 'accept script calls/s, mean ms, requests per call', 'complete script calls/s, mean ms, requests per call']
  const body = report.scenarios.map((s) => {
    const b = s.breakdown
    const call = (c: { calls: number, meanMs: number, requestsPerCall: number } | undefined): string =>
      c === undefined ? '–' : `${Math.round(c.calls / s.metricsWindowSeconds)}/s, ${c.meanMs.toFixed(2)} ms, ${c.requestsPerCall.toFixed(1)}`
    return [s.label, ms(s.load.meanMs), ms(b.serverMs), ms(b.queueMs), ms(b.inferenceMs), call(b.accept), call(b.complete)]
  })
  return table(header, body)
}

export function formatHeader (report: BenchReport): string {
  const m = report.machine
  return [
    `spotgate bench, ${report.date}: ${m.cpus} × ${m.cpuModel}, ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB, Node ${m.node}, onnxruntime-node ${m.onnxruntime}, redis ${m.redis}, load average at start ${m.loadAverageAtStart.toFixed(1)}`,
    `load: autocannon (in its own process on the same machine), ${report.load.connections} connections, ${report.load.warmupSeconds} s warm-up + ${report.load.durationSeconds} s measured, single-row requests without Idempotency-Key; /health/ready probed at ${report.load.healthProbeRate}/s on one more connection; redis-server ${report.load.redisSettings.map((a) => (a === '' ? '""' : a)).join(' ')}`,
    ...(report.only === undefined ? [] : [`partial run: --only ${report.only.join(',')}`]),
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
  const journalCost = formatJournalCost(report)
  const redisTime = formatRedisTime(report)
  const profiles = formatProfiles(report)
  const name = report.only === undefined ? 'latest' : 'partial'
  return [
    `# spotgate benchmark: ${name} run`,
    '',
    'Reproduce with `npm run bench` (a few minutes on 2 cores; needs `redis-server`); `npm run bench -- --profile` adds two gateway runs under `node --cpu-prof`.',
    `Raw figures: [${name}.json](${name}.json); chart: [${name}.svg](${name}.svg).`,
    '',
    '```',
    formatHeader(report),
    '```',
    '',
    formatTable(report),
    '',
    '## Targets',
    '',
    formatTargets(report),
    '',
    '## CPU',
    '',
    formatCpu(report),
    '',
    formatCpuPerRequest(report),
    '',
    ...(journalCost === undefined ? [] : ['## The journal on one node and on a cluster', '', journalCost, '']),
    ...(redisTime === undefined ? [] : ['## Where redis-server\'s time goes', '', redisTime, '']),
    '## Batching and the model workers',
    '',
    formatBatching(report),
    '',
    '## Where a request\'s time goes',
    '',
    formatBreakdown(report),
    '',
    ...(profiles === '' ? [] : ['## Profiles', '', '```', profiles, '```', '']),
  ].join('\n')
}

export async function writeJson (path: string, report: BenchReport): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, `${JSON.stringify(report, null, 2)}\n`)
}
