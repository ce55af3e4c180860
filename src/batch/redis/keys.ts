// The batch subsystem's Redis keys (docs/batches.md). They share the hash tag of the
// journal's first partition, `{<namespace>:0}`, so every batch script touches one slot
// on Redis Cluster; batch traffic is one call per committed part, not per line.

export const BATCH_GROUP = 'batchers'

export interface BatchKeys {
  /** Work stream (group `batchers`): one entry per validation, shard and finalization to run. */
  readonly work: string
  /** Batch ids by creation time (ms). */
  readonly batches: string
  /** File ids by creation time (ms). */
  readonly files: string
  /** Status → how many batches are in it, fleet-wide. */
  readonly statusCounts: string
  /** Batches not yet in a terminal status. */
  readonly active: string
  batch: (id: string) => string
  shards: (id: string) => string
  done: (id: string) => string
  parts: (id: string) => string
  file: (id: string) => string
}

export function batchKeys (namespace: string): BatchKeys {
  const base = `spotgate:{${namespace}:0}:batch:`
  return {
    work: `${base}work`,
    batches: `${base}batches`,
    files: `${base}files`,
    statusCounts: `${base}status-counts`,
    active: `${base}active`,
    batch: (id) => `${base}b:${id}`,
    shards: (id) => `${base}b:${id}:shards`,
    done: (id) => `${base}b:${id}:done`,
    parts: (id) => `${base}b:${id}:parts`,
    file: (id) => `${base}f:${id}`
  }
}
