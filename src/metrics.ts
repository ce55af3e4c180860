import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

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
    requests: new Counter({ name: 'spotgate_requests_total', help: 'Inference requests by how they ended', labelNames: [...modelVersion, 'outcome'], registers }),
    requestDuration: new Histogram({ name: 'spotgate_request_duration_seconds', help: 'End-to-end time of inference requests, accept to reply', labelNames: modelVersion, buckets: LATENCY_BUCKETS, registers }),
    inferenceDuration: new Histogram({ name: 'spotgate_inference_duration_seconds', help: 'Time of one onnxruntime run (one batch)', labelNames: modelVersion, buckets: LATENCY_BUCKETS, registers }),
    queueDuration: new Histogram({ name: 'spotgate_queue_duration_seconds', help: 'Time a request waited in the batcher before its run started', labelNames: modelVersion, buckets: LATENCY_BUCKETS, registers }),
    batchSize: new Histogram({ name: 'spotgate_batch_size', help: 'Rows per onnxruntime run', labelNames: modelVersion, buckets: BATCH_BUCKETS, registers }),
    inflight: new Gauge({ name: 'spotgate_inflight_requests', help: 'Requests accepted and not yet answered', labelNames: ['model'], registers }),
    queueDepth: new Gauge({ name: 'spotgate_queue_depth', help: 'Requests waiting in a model version\'s batcher', labelNames: modelVersion, registers }),
    ready: new Gauge({ name: 'spotgate_ready', help: '1 while the instance takes new traffic', registers, collect () { this.set(readinessProbe() ? 1 : 0) } }),
    /** Lets the lifecycle report readiness at scrape time instead of pushing every change. */
    setReadinessProbe: (probe: () => boolean) => { readinessProbe = probe },
    draining: new Gauge({ name: 'spotgate_draining', help: '1 from a preemption notice until exit', registers }),
    executionProvider: new Gauge({ name: 'spotgate_execution_provider_info', help: 'The execution provider each model version runs on (value 1)', labelNames: [...modelVersion, 'provider'], registers }),
    providerFallbacks: new Counter({ name: 'spotgate_execution_provider_fallbacks_total', help: 'Execution providers that failed to load a model, so the next one in order was used', labelNames: [...modelVersion, 'provider'], registers }),
    modelInstanceRestarts: new Counter({ name: 'spotgate_model_instance_restarts_total', help: 'Model worker threads that died and were replaced', labelNames: modelVersion, registers }),
    journalDuration: new Histogram({ name: 'spotgate_journal_duration_seconds', help: 'Latency of journal operations (one call may carry many requests)', labelNames: ['op'], buckets: JOURNAL_BUCKETS, registers }),
    journalErrors: new Counter({ name: 'spotgate_journal_errors_total', help: 'Journal operations that failed', labelNames: ['op'], registers }),
    notices: new Counter({ name: 'spotgate_preemption_notices_total', help: 'Preemption and termination notices received', labelNames: ['source'], registers }),
    rebalanceRecommendations: new Counter({ name: 'spotgate_rebalance_recommendations_total', help: 'AWS rebalance recommendations seen (an early warning, not a deadline)', registers }),
    noticeSourceErrors: new Counter({ name: 'spotgate_notice_source_errors_total', help: 'Failed or unparsable answers from a metadata service watched for notices', labelNames: ['source'], registers }),
    handoffs: new Counter({ name: 'spotgate_handoffs_total', help: 'Requests handed off to peers through the journal', labelNames: ['reason'], registers }),
    replays: new Counter({ name: 'spotgate_replays_total', help: 'Replay stream entries this instance processed, by result', labelNames: ['outcome'], registers }),
    replayLatency: new Histogram({ name: 'spotgate_replay_latency_seconds', help: 'Time from a request\'s hand-off to its answer by a replaying instance', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers }),
    replayBacklog: new Gauge({ name: 'spotgate_replay_backlog', help: 'Entries in the fleet\'s replay stream, as last seen by this instance', registers }),
    leaseTakeovers: new Counter({ name: 'spotgate_lease_takeovers_total', help: 'Instances whose lease expired and whose unfinished requests this instance moved to the replay stream', registers }),
    leaseTakeoverRequests: new Counter({ name: 'spotgate_lease_takeover_requests_total', help: 'Requests moved to the replay stream from instances whose lease expired', registers }),
    leaseLost: new Counter({ name: 'spotgate_lease_lost_total', help: 'Times this instance found its own lease expired (a pause longer than LEASE_TTL_MS)', registers })
  }
}

export type Metrics = ReturnType<typeof createMetrics>
