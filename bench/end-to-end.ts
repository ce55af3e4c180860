import { readdirSync, readFileSync } from 'node:fs'
import type { BenchRequest } from './bodies.js'
import type { LoadShape } from './ceilings.js'
import { startGateway, type RunningGateway } from './gateway.js'
import { batchingOf, breakdownOf, samplesBetween, type Batching, type Breakdown, type Samples } from './gateway-metrics.js'
import { runLoad, type LoadResult } from './load.js'
import type { BenchModel } from './models.js'
import { watchCpu } from './cpu.js'
import { watchResident } from './processes.js'
import { startBesideBatch } from './batch-beside.js'
import { startJournal } from './redis.js'

// spotgate itself, end to end: a real gateway process (and, with the Redis journal,
// a redis-server of its own), under the same load as the ceilings.

export interface Scenario {
  readonly id: string
  readonly label: string
  readonly model: BenchModel
  readonly request: BenchRequest
  /** `redis`: one redis-server; `cluster`: a Redis Cluster of three primaries with a replica each. */
  readonly journal: 'redis' | 'cluster' | 'in-process'
  readonly encoding: 'json' | 'binary'
  /** Gateway settings of this run, e.g. MODEL_ISOLATION. */
  readonly env?: Record<string, string>
  /** Lines of a batch job (copies of the JSON request) that runs beside the online load. */
  readonly batchLines?: number
}

/** The child processes of `pid` (a gateway's model instances with MODEL_ISOLATION=process). */
function childProcesses (pid: number): number[] {
  const children: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry))
    } catch {}
  }
  return children
}

export interface ScenarioResult {
  readonly id: string
  readonly label: string
  readonly model: string
  readonly journal: Scenario['journal']
  readonly encoding: Scenario['encoding']
  readonly load: LoadResult
  /** GET /health/ready probed at a steady rate during the measured window. */
  readonly health: LoadResult
  readonly rssBytes: number | undefined
  /** Mean rows per onnxruntime run in the measured window, from spotgate_batch_size. */
  readonly meanBatchSize: number | undefined
  /** Percent of one core each process used in the measured window (the machine has cores × 100). */
  readonly cpu: Record<string, number>
  /** Seconds from the /metrics scrape at the window's start to the window's end: the span the gateway's figures below cover. */
  readonly metricsWindowSeconds: number
  /** Where a request's time went, from the gateway's own histograms (measured window). */
  readonly breakdown: Breakdown
  /** Rows per run and how busy the model workers were (measured window). */
  readonly batching: Batching
  /** With a batch beside the load: its lines committed per second in the measured window. */
  readonly batchLinesPerSecond?: number
  /** One redis-server: microseconds it spent executing each command in the measured window (INFO commandstats). */
  readonly redisCommandUsec?: Record<string, number>
}

export interface GatewayRunOptions {
  readonly shape: LoadShape
  /** Requests per second of the readiness probe. */
  readonly healthRate: number
  /** Node flags for the gateway, e.g. --cpu-prof. */
  readonly nodeArgs?: readonly string[]
  /** Extra gateway environment, e.g. MODEL_INSTANCES, for experiments. */
  readonly env?: Record<string, string>
}

export async function measureScenario (scenario: Scenario, options: GatewayRunOptions): Promise<ScenarioResult> {
  const redis = scenario.journal === 'in-process' ? undefined : await startJournal(scenario.journal)
  try {
    const gateway = await startGateway({
      repo: scenario.model.repo,
      ...(options.nodeArgs !== undefined && { nodeArgs: options.nodeArgs }),
      env: { ...redis?.env, ...scenario.env, ...options.env }
    })
    try {
      const memory = watchResident(gateway.pid)
      const workers = await gateway.workerThreads()
      const cpu = watchCpu()
      cpu.add('machine', 0)
      // With MODEL_ISOLATION=process the model instances are child processes: the server is all of them.
      const instances = childProcesses(gateway.pid)
      cpu.addProcesses('gateway', [gateway.pid, ...instances])
      cpu.add('gateway main thread', gateway.pid, gateway.pid)
      if (instances.length > 0) cpu.addProcesses('model workers', instances)
      else if (workers.length > 0) cpu.addThreads('model workers', gateway.pid, workers)
      if (redis !== undefined && redis.pids.length > 0) cpu.addProcesses('redis-server', redis.pids)
      if (redis !== undefined && redis.replicaPids.length > 0) cpu.addProcesses('redis replicas', redis.replicaPids)
      const { shape } = options
      const batch = scenario.batchLines === undefined ? undefined : await startBesideBatch(gateway.url, scenario.model.name, scenario.request.body, scenario.batchLines)
      let batchAtStart: Promise<{ lines: number, at: number }> | undefined
      let atWindowStart: Promise<{ samples: Samples, atUs: number }> | undefined
      let commandStatsReset: Promise<void> | undefined
      const [load, health] = await Promise.all([
        runLoad({ url: `${gateway.url}/v2/models/${scenario.model.name}/infer`, method: 'POST', body: scenario.request.body, headers: scenario.request.headers, ...shape }, {
          onStart: (pid) => cpu.add('load generator', pid),
          onWindowStart: () => {
            atWindowStart = scrapeAt(gateway)
            commandStatsReset = redis?.resetCommandStats()
            if (batch !== undefined) batchAtStart = batch.completed().then((lines) => ({ lines, at: Date.now() }))
          }
        }),
        runLoad({ url: `${gateway.url}/health/ready`, connections: 1, ratePerSecond: options.healthRate, delayMs: shape.warmupSeconds * 1000, warmupSeconds: 0, durationSeconds: shape.durationSeconds })
      ])
      const batchAtEnd = batch === undefined ? undefined : { lines: await batch.completed(), at: Date.now() }
      await commandStatsReset
      const redisCommandUsec = scenario.journal === 'redis' ? await redis?.commandStats() : undefined
      cpu.stop()
      const rssBytes = memory.stop()
      const batchStart = await batchAtStart
      const batchLinesPerSecond = batchAtEnd !== undefined && batchStart !== undefined ? (batchAtEnd.lines - batchStart.lines) / ((batchAtEnd.at - batchStart.at) / 1000) : undefined
      if (atWindowStart === undefined) throw new Error('the load generator never reported the start of its measured window')
      const start = await atWindowStart
      const inWindow = samplesBetween(start.samples, await gateway.scrape())
      // Runs still in flight when the load stopped finish after the window; a few batches at most.
      const metricsWindowSeconds = (load.window.endUs - start.atUs) / 1e6
      const batching = batchingOf(inWindow, metricsWindowSeconds, instances.length > 0 ? instances.length : workers.length)
      return {
        id: scenario.id,
        label: scenario.label,
        model: scenario.model.name,
        journal: scenario.journal,
        encoding: scenario.encoding,
        load,
        health,
        rssBytes,
        meanBatchSize: batching.meanRowsPerRun,
        ...(batchLinesPerSecond !== undefined && { label: `${scenario.label} (the batch beside it: ${Math.round(batchLinesPerSecond)} lines/s)`, batchLinesPerSecond }),
        cpu: cpu.usage(load.window),
        metricsWindowSeconds,
        breakdown: breakdownOf(inWindow),
        batching,
        ...(redisCommandUsec !== undefined && { redisCommandUsec })
      }
    } finally {
      await gateway.stop()
    }
  } finally {
    await redis?.stop()
  }
}

/** A /metrics scrape stamped (monotonic clock, µs) halfway between asking and hearing back. */
async function scrapeAt (gateway: RunningGateway): Promise<{ samples: Samples, atUs: number }> {
  const asked = process.hrtime.bigint()
  const samples = await gateway.scrape()
  return { samples, atUs: Number((asked + process.hrtime.bigint()) / 2000n) }
}
