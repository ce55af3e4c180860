import { sumSamples } from '../scripts/lib/process.js'

// What the gateway's own /metrics say about a measured window: two scrapes, one when
// the window opens and one after it, and the difference between them.

/** Parsed /metrics: `name{labels}` → value. */
export type Samples = Map<string, number>

/** Counters and histograms accumulated between two scrapes (gauges make no sense here and are not read). */
export function samplesBetween (start: Samples, end: Samples): Samples {
  const delta: Samples = new Map()
  for (const [key, value] of end) delta.set(key, value - (start.get(key) ?? 0))
  return delta
}

export interface Breakdown {
  /** Mean of spotgate_request_duration_seconds: onRequest to reply, in ms. */
  readonly serverMs?: number
  /** Mean time a request waited in the batcher. */
  readonly queueMs?: number
  /** Mean onnxruntime run time seen by a request (its batch's run). */
  readonly inferenceMs?: number
  /** Journal script calls: how many, their mean time, and requests per call (group commit). */
  readonly accept?: JournalCalls
  readonly complete?: JournalCalls
}

export interface JournalCalls { readonly calls: number, readonly meanMs: number, readonly requestsPerCall: number }

function mean (samples: Samples, name: string, ...labels: string[]): { sum: number, count: number } | undefined {
  const count = sumSamples(samples, `${name}_count`, ...labels)
  return count === 0 ? undefined : { sum: sumSamples(samples, `${name}_sum`, ...labels), count }
}

/** Where a request's time went, from the gateway's own histograms. */
export function breakdownOf (samples: Samples): Breakdown {
  const ms = (name: string): number | undefined => {
    const m = mean(samples, name)
    return m === undefined ? undefined : (1000 * m.sum) / m.count
  }
  const requests = sumSamples(samples, 'spotgate_requests_total')
  const journal = (op: string): JournalCalls | undefined => {
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

export interface BatchBucket {
  /** Rows per run this bucket holds, e.g. "1", "3–4", "> 256". */
  readonly rows: string
  readonly runs: number
}

export interface Batching {
  /** onnxruntime runs in the window, from spotgate_batch_size_count. */
  readonly runs: number
  readonly meanRowsPerRun: number | undefined
  /** Runs per bucket of spotgate_batch_size (not cumulative), empty buckets left out. */
  readonly distribution: readonly BatchBucket[]
  /** Model worker threads the gateway started. */
  readonly instances: number
  /** Mean time of one run, ms. */
  readonly meanRunMs: number | undefined
  /** Sum of run times ÷ (window seconds × instances): how much of the window the workers spent in runs. */
  readonly busyShare: number | undefined
  /**
   * 'per run': spotgate_inference_duration_seconds has one observation per run, and its
   * sum is the workers' busy time. 'per request': one per request (each sees its batch's
   * run), so the sum counts a run once per row; the busy time is then its mean × runs.
   */
  readonly runTimeSource: 'per run' | 'per request'
}

function batchDistribution (samples: Samples): BatchBucket[] {
  const cumulative = new Map<number, number>()
  for (const [key, value] of samples) {
    if (!key.startsWith('spotgate_batch_size_bucket{')) continue
    const le = /le="([^"]+)"/.exec(key)?.[1]
    if (le === undefined) continue
    const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le)
    cumulative.set(bound, (cumulative.get(bound) ?? 0) + value)
  }
  const bounds = [...cumulative.keys()].sort((a, b) => a - b)
  const buckets: BatchBucket[] = []
  let below = 0
  let previous = 0
  for (const bound of bounds) {
    const total = cumulative.get(bound) as number
    const runs = total - below
    const rows = bound === Number.POSITIVE_INFINITY ? `> ${previous}` : bound === previous + 1 ? String(bound) : `${previous + 1}–${bound}`
    if (runs > 0) buckets.push({ rows, runs })
    below = total
    previous = bound
  }
  return buckets
}

/** The batcher and the model workers in a window of `seconds`, from the samples accumulated in it. */
export function batchingOf (samples: Samples, seconds: number, instances: number): Batching {
  const runs = sumSamples(samples, 'spotgate_batch_size_count')
  const rows = sumSamples(samples, 'spotgate_batch_size_sum')
  const observed = mean(samples, 'spotgate_inference_duration_seconds')
  const runTimeSource = observed !== undefined && observed.count > runs ? 'per request' : 'per run'
  const runSeconds = observed === undefined ? undefined : runTimeSource === 'per run' ? observed.sum : (observed.sum / observed.count) * runs
  return {
    runs,
    meanRowsPerRun: runs === 0 ? undefined : rows / runs,
    distribution: batchDistribution(samples),
    instances,
    meanRunMs: runSeconds === undefined || runs === 0 ? undefined : (1000 * runSeconds) / runs,
    busyShare: runSeconds === undefined || instances === 0 || seconds <= 0 ? undefined : runSeconds / (seconds * instances),
    runTimeSource
  }
}
