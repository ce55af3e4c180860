import calculateSlot from 'cluster-key-slot'

// The journal's Redis keys (docs/journal.md). A namespace is spread over `partitions`
// hash tags; a request's partition follows from its id alone, so every instance finds
// it. Every key of one partition shares the partition's tag, so each Lua script touches
// one slot on Redis Cluster, and a cluster spreads the partitions over its shards.

/** FNV-1a, 32 bits: a request id's partition must be the same on every instance and release. */
function fnv1a (text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

/** The keys of one partition. */
export interface PartitionKeys {
  readonly index: number
  /** Prefix of a request's record (a packed string); the id follows. */
  readonly recordPrefix: string
  /** Prefix of a request's state hash, written only when a hand-off or a replay changes its state. */
  readonly statePrefix: string
  /** Prefix of the key a waiting client sets, so the completion is published. */
  readonly waiterPrefix: string
  /** Prefix of a request's completion channel. */
  readonly channelPrefix: string
  /** Prefix of an instance's owned set (ids it accepted or is replaying, by accept time). */
  readonly ownedPrefix: string
  /** Instance → lease expiry (ms, Redis's clock). */
  readonly leases: string
  /** Handed-off requests waiting for a replayer (a stream with the `replayers` group). */
  readonly replayStream: string
  /** Handed-off requests not yet claimed, by hand-off time. */
  readonly handedOff: string
}

export const REPLAY_GROUP = 'replayers'

/** Bumped when the record layout or the key schema changes; the journal refuses a namespace of another layout. */
export const JOURNAL_LAYOUT = '3'

const SLOTS = 16384

/**
 * The hash tag of partition `index` of `count`: `<namespace>:<index>`, or with a
 * `:<n>` suffix, the first that puts it in the index-th of `count` equal slot ranges.
 * Clusters give each shard a contiguous range of slots (redis-cli, ElastiCache and
 * Memorystore alike), so evenly spread tags spread the partitions evenly over shards.
 */
export function partitionTag (namespace: string, index: number, count: number): string {
  const base = `${namespace}:${index}`
  if (count === 1) return base
  const from = Math.floor(index * SLOTS / count)
  const to = Math.floor((index + 1) * SLOTS / count)
  for (let suffix = 0; ; suffix++) {
    const tag = suffix === 0 ? base : `${base}:${suffix}`
    const slot = calculateSlot(tag)
    if (slot >= from && slot < to) return tag
  }
}

export interface JournalKeys {
  readonly namespace: string
  readonly partitions: readonly PartitionKeys[]
  /** `{layout, partitions}` of the namespace, so instances that disagree refuse to start instead of losing requests. */
  readonly meta: string
  /** A key every earlier layout wrote, to tell a namespace it cannot read. */
  readonly legacyLeases: string
  partitionOf: (id: string) => PartitionKeys
  record: (id: string) => string
  state: (id: string) => string
  waiter: (id: string) => string
  channel: (id: string) => string
  owned: (partition: PartitionKeys, instance: string) => string
}

export function journalKeys (namespace: string, partitions: number): JournalKeys {
  const all = Array.from({ length: partitions }, (_, index): PartitionKeys => {
    const base = `spotgate:{${partitionTag(namespace, index, partitions)}}`
    return {
      index,
      recordPrefix: `${base}:r:`,
      statePrefix: `${base}:s:`,
      waiterPrefix: `${base}:w:`,
      channelPrefix: `${base}:final:`,
      ownedPrefix: `${base}:o:`,
      leases: `${base}:leases`,
      replayStream: `${base}:replay`,
      handedOff: `${base}:handed`
    }
  })
  const partitionOf = (id: string): PartitionKeys => all[partitions === 1 ? 0 : fnv1a(id) % partitions]
  return {
    namespace,
    partitions: all,
    meta: `spotgate:{${namespace}}:meta`,
    legacyLeases: `spotgate:{${namespace}}:leases`,
    partitionOf,
    record: (id) => partitionOf(id).recordPrefix + id,
    state: (id) => partitionOf(id).statePrefix + id,
    waiter: (id) => partitionOf(id).waiterPrefix + id,
    channel: (id) => partitionOf(id).channelPrefix + id,
    owned: (partition, instance) => partition.ownedPrefix + instance
  }
}
