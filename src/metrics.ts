import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { FastCounter, FastGauge, FastHistogram, type CounterChild, type GaugeChild, type HistogramChild } from './preaggregated-metrics.js'

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
const JOURNAL_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]

/** How a request ended, as `spotgate_requests_total{outcome}` reports it. */
export type Outcome =
  | 'ok' | 'replayed' | 'accepted_async' | 'pending' | 'invalid' | 'not_found' | 'conflict'
  | 'queue_full' | 'unavailable' | 'handed_off' | 'failed'

/** Every metric spotgate exports, defined once on a registry of its own (so tests can run several apps). */
export function createMetrics () {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  // prom-client names these gauges like counters, which promtool rejects; the per-type
  // nodejs_active_handles / _requests / _resources gauges carry the same numbers.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name)
  const registers = [registry]
  const modelVersion = ['model', 'version'] as const
  let readinessProbe = (): boolean => false

  return {
    registry,
    // Observed on every request: pre-aggregated, their children held by each model version (modelMetrics).
    requests: new FastCounter('spotgate_requests_total', 'Inference requests by how they ended', [...modelVersion, 'outcome'], registry),
    requestDuration: new FastHistogram('spotgate_request_duration_seconds', 'End-to-end time of inference requests, accept to reply', modelVersion, LATENCY_BUCKETS, registry),
    inferenceDuration: new FastHistogram('spotgate_inference_duration_seconds', 'Time of one onnxruntime run (one batch)', modelVersion, LATENCY_BUCKETS, registry),
    queueDuration: new FastHistogram('spotgate_queue_duration_seconds', 'Time a request waited in the batcher before its run started', modelVersion, LATENCY_BUCKETS, registry),
    batchSize: new FastHistogram('spotgate_batch_size', 'Rows per onnxruntime run', modelVersion, BATCH_BUCKETS, registry),
    inflight: new FastGauge('spotgate_inflight_requests', 'Requests accepted and not yet answered', ['model'], registry),
    queueDepth: new FastGauge('spotgate_queue_depth', 'Requests waiting in a model version\'s batcher', modelVersion, registry),
    ready: new Gauge({ name: 'spotgate_ready', help: '1 while the instance takes new traffic', registers, collect () { this.set(readinessProbe() ? 1 : 0) } }),
    /** Lets the lifecycle report readiness at scrape time instead of pushing every change. */
    setReadinessProbe: (probe: () => boolean) => { readinessProbe = probe },
    draining: new Gauge({ name: 'spotgate_draining', help: '1 from a preemption notice until exit', registers }),
    executionProvider: new Gauge({ name: 'spotgate_execution_provider_info', help: 'The execution provider each model version runs on (value 1)', labelNames: [...modelVersion, 'provider'], registers }),
    providerFallbacks: new Counter({ name: 'spotgate_execution_provider_fallbacks_total', help: 'Execution providers that failed to load a model, so the next one in order was used', labelNames: [...modelVersion, 'provider'], registers }),
    modelLoadFailures: new Counter({ name: 'spotgate_model_load_failures_total', help: 'Model versions that failed to load and are not served (MODEL_LOAD_FAILURE=skip)', labelNames: modelVersion, registers }),
    modelWarmupFailures: new Counter({ name: 'spotgate_model_warmup_failures_total', help: 'Warm-up runs that failed; the model version is served anyway', labelNames: modelVersion, registers }),
    modelInstanceRestarts: new Counter({ name: 'spotgate_model_instance_restarts_total', help: 'Model worker threads that died and were replaced', labelNames: modelVersion, registers }),
    journalDuration: new FastHistogram('spotgate_journal_duration_seconds', 'Latency of journal operations (one call may carry many requests)', ['op'], JOURNAL_BUCKETS, registry),
    journalErrors: new Counter({ name: 'spotgate_journal_errors_total', help: 'Journal operations that failed', labelNames: ['op'], registers }),
    journalPartitionDegraded: new Gauge({ name: 'spotgate_journal_partition_degraded', help: 'Journal partitions whose Redis primary has fewer replicas than JOURNAL_MIN_REPLICAS (1: its requests get 503)', labelNames: ['partition'], registers }),
    journalReplicaShortfalls: new Counter({ name: 'spotgate_journal_replica_shortfalls_total', help: 'Accepts and hand-offs refused because fewer than JOURNAL_MIN_REPLICAS replicas acknowledged them in time', labelNames: ['op'], registers }),
    notices: new Counter({ name: 'spotgate_preemption_notices_total', help: 'Preemption and termination notices received', labelNames: ['source'], registers }),
    rebalanceRecommendations: new Counter({ name: 'spotgate_rebalance_recommendations_total', help: 'AWS rebalance recommendations seen (an early warning, not a deadline)', registers }),
    noticeSourceErrors: new Counter({ name: 'spotgate_notice_source_errors_total', help: 'Failed or unparsable answers from a metadata service watched for notices', labelNames: ['source'], registers }),
    handoffs: new Counter({ name: 'spotgate_handoffs_total', help: 'Requests handed off to peers through the journal', labelNames: ['reason'], registers }),
    replays: new Counter({ name: 'spotgate_replays_total', help: 'Replay stream entries this instance processed, by result', labelNames: ['outcome'], registers }),
    replayLatency: new Histogram({ name: 'spotgate_replay_latency_seconds', help: 'Time from a request\'s hand-off to its answer by a replaying instance', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers }),
    replayBacklog: new Gauge({ name: 'spotgate_replay_backlog', help: 'Entries in the fleet\'s replay stream, as last seen by this instance', registers }),
    leaseTakeovers: new Counter({ name: 'spotgate_lease_takeovers_total', help: 'Instances whose lease expired and whose unfinished requests this instance moved to the replay stream', registers }),
    leaseTakeoverRequests: new Counter({ name: 'spotgate_lease_takeover_requests_total', help: 'Requests moved to the replay stream from instances whose lease expired', registers }),
    leaseLost: new Counter({ name: 'spotgate_lease_lost_total', help: 'Times this instance found its own lease expired (a pause longer than LEASE_TTL_MS)', registers }),
    batchLines: new Counter({ name: 'spotgate_batch_lines_total', help: 'Batch input lines by what became of them here: committed (written first), handed_back (left unrun at a drain), taken_over (left unrun by a dead or stalled holder, claimed here), stale (computed here but fenced out or already committed)', labelNames: ['outcome'], registers }),
    batchShards: new Counter({ name: 'spotgate_batch_shards_total', help: 'Batch shards by what became of this instance\'s claim: committed (completed here), handed_back (at a drain), taken_over (claimed from a dead or stalled holder), stale (lost to a newer claim)', labelNames: ['outcome'], registers }),
    batches: new Gauge({ name: 'spotgate_batches', help: 'Batches by status across the fleet, as last read by this instance', labelNames: ['status'], registers })
  }
}

export type Metrics = ReturnType<typeof createMetrics>

/** The children one model version observes on every request, made once when it loads. */
export interface ModelMetrics {
  readonly inflight: GaugeChild
  readonly queueDepth: GaugeChild
  readonly requestDuration: HistogramChild
  readonly inferenceDuration: HistogramChild
  readonly queueDuration: HistogramChild
  readonly batchSize: HistogramChild
  /** The spotgate_requests_total child of one outcome. */
  readonly requests: (outcome: Outcome) => CounterChild
}

export function modelMetrics (metrics: Metrics, model: string, version: string): ModelMetrics {
  const outcomes = new Map<Outcome, CounterChild>()
  return {
    inflight: metrics.inflight.child(model),
    queueDepth: metrics.queueDepth.child(model, version),
    requestDuration: metrics.requestDuration.child(model, version),
    inferenceDuration: metrics.inferenceDuration.child(model, version),
    queueDuration: metrics.queueDuration.child(model, version),
    batchSize: metrics.batchSize.child(model, version),
    requests: (outcome) => {
      let child = outcomes.get(outcome)
      if (child === undefined) outcomes.set(outcome, (child = metrics.requests.child(model, version, outcome)))
      return child
    }
  }
}
