import type { BenchRequest } from './bodies.js'
import type { LoadShape } from './ceilings.js'
import { sumSamples } from '../scripts/lib/process.js'
import { startGateway } from './gateway.js'
import { runLoad, type LoadResult } from './load.js'
import type { BenchModel } from './models.js'
import { watchCpu } from './cpu.js'
import { watchResident } from './processes.js'
import { startRedis } from './redis.js'

// spotgate itself, end to end: a real gateway process (and, with the Redis journal,
// a redis-server of its own), under the same load as the ceilings.

export interface Scenario {
  readonly id: string
  readonly label: string
  readonly model: BenchModel
  readonly request: BenchRequest
  readonly journal: 'redis' | 'in-process'
  readonly encoding: 'json' | 'binary'
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
  /** Mean rows per onnxruntime run, from spotgate_batch_size. */
  readonly meanBatchSize: number | undefined
  /** Percent of one core each process used in the measured window (the machine has cores × 100). */
  readonly cpu: Record<string, number>
  /** Where a request's time went, from the gateway's own histograms (whole run, warm-up included). */
  readonly breakdown: Breakdown
}

export interface Breakdown {
  /** Mean of spotgate_request_duration_seconds: onRequest to reply, in ms. */
  readonly serverMs?: number
  /** Mean time a request waited in the batcher. */
  readonly queueMs?: number
  /** Mean onnxruntime run time seen by a request (its batch's run). */
  readonly inferenceMs?: number
  /** Journal script calls: how many, their mean time, and requests per call (group commit). */
  readonly accept?: { readonly calls: number, readonly meanMs: number, readonly requestsPerCall: number }
  readonly complete?: { readonly calls: number, readonly meanMs: number, readonly requestsPerCall: number }
}

function mean (samples: Map<string, number>, name: string, ...labels: string[]): { sum: number, count: number } | undefined {
  const count = sumSamples(samples, `${name}_count`, ...labels)
  return count === 0 ? undefined : { sum: sumSamples(samples, `${name}_sum`, ...labels), count }
}

function breakdownOf (samples: Map<string, number>): Breakdown {
  const ms = (name: string): number | undefined => {
    const m = mean(samples, name)
    return m === undefined ? undefined : (1000 * m.sum) / m.count
  }
  const requests = sumSamples(samples, 'spotgate_requests_total')
  const journal = (op: string) => {
    const m = mean(samples, 'spotgate_journal_duration_seconds', `op="${op}"`)
    return m === undefined ? undefined : { calls: m.count, meanMs: (1000 * m.sum) / m.count, requestsPerCall: requests / m.count }
  }
  const accept = journal('accept')
  const complete = journal('complete')
  const serverMs = ms('spotgate_request_duration_seconds')
  const queueMs = ms('spotgate_queue_duration_seconds')
  const inferenceMs = ms('spotgate_inference_duration_seconds')
  return {
    ...(serverMs !== undefined && { serverMs }),
    ...(queueMs !== undefined && { queueMs }),
    ...(inferenceMs !== undefined && { inferenceMs }),
    ...(accept !== undefined && { accept }),
    ...(complete !== undefined && { complete })
  }
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
  const redis = scenario.journal === 'redis' ? await startRedis() : undefined
  try {
    const gateway = await startGateway({
      repo: scenario.model.repo,
      ...(redis !== undefined && { redisUrl: redis.url }),
      ...(options.nodeArgs !== undefined && { nodeArgs: options.nodeArgs }),
      ...(options.env !== undefined && { env: options.env })
    })
    try {
      const memory = watchResident(gateway.pid)
      const cpu = watchCpu()
      cpu.add('machine', 0)
      cpu.add('gateway', gateway.pid)
      cpu.add('gateway main thread', gateway.pid, gateway.pid)
      if (redis?.pid !== undefined) cpu.add('redis-server', redis.pid)
      const { shape } = options
      const [load, health] = await Promise.all([
        runLoad({ url: `${gateway.url}/v2/models/${scenario.model.name}/infer`, method: 'POST', body: scenario.request.body, headers: scenario.request.headers, ...shape }, (pid) => cpu.add('load generator', pid)),
        runLoad({ url: `${gateway.url}/health/ready`, connections: 1, ratePerSecond: options.healthRate, delayMs: shape.warmupSeconds * 1000, warmupSeconds: 0, durationSeconds: shape.durationSeconds })
      ])
      cpu.stop()
      const rssBytes = memory.stop()
      const samples = await gateway.scrape()
      const batches = mean(samples, 'spotgate_batch_size')
      return {
        id: scenario.id,
        label: scenario.label,
        model: scenario.model.name,
        journal: scenario.journal,
        encoding: scenario.encoding,
        load,
        health,
        rssBytes,
        meanBatchSize: batches === undefined ? undefined : batches.sum / batches.count,
        cpu: cpu.usage(load.window),
        breakdown: breakdownOf(samples)
      }
    } finally {
      await gateway.stop()
    }
  } finally {
    await redis?.stop()
  }
}
