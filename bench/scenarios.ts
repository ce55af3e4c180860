import { binaryRequest, jsonRequest } from './bodies.js'
import type { Scenario } from './end-to-end.js'
import type { BenchModel, BenchModels } from './models.js'

// The gateway runs of the bench, in the order they are measured; `--only` picks some.

export const SCENARIO_IDS = ['tiny-json-redis', 'tiny-json-in-process', 'tiny-json-cluster', 'tiny-json-cluster-replicas', 'mlp-binary-redis', 'mlp-json-redis', 'cnn-binary-redis', 'tiny-json-redis-threads', 'mlp-binary-redis-threads', 'cnn-binary-redis-threads', 'tiny-json-redis-batch'] as const
export type ScenarioId = typeof SCENARIO_IDS[number]

const THREADS = { MODEL_ISOLATION: 'thread' }

export function benchScenarios (models: BenchModels): Scenario[] {
  const { tiny, mlp, cnn } = models
  const scenarios: Array<Scenario & { id: ScenarioId }> = [
    { id: 'tiny-json-redis', label: 'tiny JSON, Redis journal', model: tiny, request: jsonRequest(tiny), journal: 'redis', encoding: 'json' },
    { id: 'tiny-json-in-process', label: 'tiny JSON, in-process journal', model: tiny, request: jsonRequest(tiny), journal: 'in-process', encoding: 'json' },
    // The journal on a three-primary Redis Cluster (16 partitions), without and with WAIT for a replica per accept group.
    { id: 'tiny-json-cluster', label: 'tiny JSON, Redis Cluster journal', model: tiny, request: jsonRequest(tiny), journal: 'cluster', encoding: 'json' },
    { id: 'tiny-json-cluster-replicas', label: 'tiny JSON, Redis Cluster journal, JOURNAL_MIN_REPLICAS=1', model: tiny, request: jsonRequest(tiny), journal: 'cluster', encoding: 'json', env: { JOURNAL_MIN_REPLICAS: '1' } },
    { id: 'mlp-binary-redis', label: 'MLP binary, Redis journal', model: mlp, request: binaryRequest(mlp), journal: 'redis', encoding: 'binary' },
    { id: 'mlp-json-redis', label: 'MLP JSON, Redis journal', model: mlp, request: jsonRequest(mlp), journal: 'redis', encoding: 'json' },
    { id: 'cnn-binary-redis', label: 'PP-OCR cls binary, Redis journal', model: cnn, request: binaryRequest(cnn), journal: 'redis', encoding: 'binary' },
    // The same three with model instances in worker threads instead of child processes (MODEL_ISOLATION).
    { id: 'tiny-json-redis-threads', label: 'tiny JSON, Redis journal, worker threads', model: tiny, request: jsonRequest(tiny), journal: 'redis', encoding: 'json', env: THREADS },
    { id: 'mlp-binary-redis-threads', label: 'MLP binary, Redis journal, worker threads', model: mlp, request: binaryRequest(mlp), journal: 'redis', encoding: 'binary', env: THREADS },
    { id: 'cnn-binary-redis-threads', label: 'PP-OCR cls binary, Redis journal, worker threads', model: cnn, request: binaryRequest(cnn), journal: 'redis', encoding: 'binary', env: THREADS },
    // tiny-json-redis with a batch job of the same requests running beside the load: what the batch lane costs online traffic.
    { id: 'tiny-json-redis-batch', label: 'tiny JSON, Redis journal, a batch running', model: tiny, request: jsonRequest(tiny), journal: 'redis', encoding: 'json', batchLines: 200_000, env: { MAX_BATCH_LINES: '200000' } }
  ]
  return scenarios
}

/** The scenarios named in `only` (all of them when it is empty), in the bench's order. */
export function selectScenarios (all: readonly Scenario[], only: readonly string[]): Scenario[] {
  const unknown = only.filter((id) => !all.some((s) => s.id === id))
  if (unknown.length > 0) throw new Error(`--only: no scenario ${unknown.join(', ')}; known: ${all.map((s) => s.id).join(', ')}`)
  return only.length === 0 ? [...all] : all.filter((s) => only.includes(s.id))
}

/** The models the selected scenarios serve, each once: their onnxruntime ceilings are measured. */
export function modelsOf (scenarios: readonly Scenario[]): BenchModel[] {
  return [...new Map(scenarios.map((s) => [s.model.name, s.model])).values()]
}
