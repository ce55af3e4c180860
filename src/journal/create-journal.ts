import type { Logger } from 'pino'
import type { Config } from '../config.js'
import type { Metrics } from '../metrics.js'
import { EmbeddedJournal } from './embedded-journal.js'
import type { Journal } from './journal.js'
import { RedisConnection } from './redis/connection.js'
import { FleetStore } from './redis/fleet-store.js'
import { JOURNAL_LAYOUT, journalKeys, type JournalKeys } from './redis/keys.js'
import { ReplicatedWrites } from './redis/replicated-writes.js'
import { RedisRequestJournal } from './redis/request-journal.js'
import type { RedisTarget } from './redis/target.js'

/** The journal an instance writes to, and with Redis what makes it part of a fleet. */
export interface JournalBackend {
  readonly journal: Journal
  /** Leases, take-overs and the replay streams; absent for the in-process journal. */
  readonly fleet?: FleetStore
  /** The Redis connection, for what else keeps fleet state there (batches); absent for the in-process journal. */
  readonly connection?: RedisConnection
  close: () => Promise<void>
}

export interface JournalDeps {
  readonly metrics: Metrics
  readonly log: Logger
  /** Called when Redis holds a namespace this version cannot read or was given another partition count. */
  readonly incompatible: (message: string) => void
}

/** The slowest transfer a record of MAX_BODY_BYTES is allowed beyond REDIS_COMMAND_TIMEOUT_MS: 4 MiB/s. */
const BULK_BYTES_PER_MS = 4 * 1024 * 1024 / 1000

/** Redis when one is configured (URL, Sentinel or Cluster); otherwise the in-process journal, with a warning that nothing can reach peers. */
export function createJournal (config: Config, deps: JournalDeps): JournalBackend {
  if (config.redis === undefined) {
    deps.log.warn('no Redis is configured (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES): using the in-process journal; accepted requests cannot be handed to peers and do not survive this process')
    const journal = new EmbeddedJournal(config.instanceId, config.resultTtlSeconds)
    return { journal, close: () => journal.close() }
  }
  const parts = createRedisJournal({
    target: config.redis,
    instanceId: config.instanceId,
    commandTimeoutMs: config.redisCommandTimeoutMs,
    namespace: config.journalNamespace,
    partitions: config.journalPartitions,
    resultTtlSeconds: config.resultTtlSeconds,
    leaseTtlMs: config.leaseTtlMs,
    minReplicas: config.journalMinReplicas,
    replicaTimeoutMs: config.journalReplicaTimeoutMs,
    bulkTimeoutMs: config.redisCommandTimeoutMs + Math.ceil(config.maxBodyBytes / BULK_BYTES_PER_MS)
  }, deps)
  let checked = false
  parts.connection.onRecovery(() => {
    if (checked) return
    checked = true
    void checkLayout(parts.connection, parts.keys).then((problem) => { if (problem !== undefined) deps.incompatible(problem) }, () => { checked = false })
  })
  return parts
}

export interface RedisJournalSettings {
  readonly target: RedisTarget
  readonly instanceId: string
  readonly commandTimeoutMs: number
  readonly namespace: string
  readonly partitions: number
  readonly resultTtlSeconds: number
  readonly leaseTtlMs: number
  /** 0: an accept counts once the primary has it. */
  readonly minReplicas: number
  readonly replicaTimeoutMs: number
  /** The command timeout for accepts and completions that carry large records (default: commandTimeoutMs). */
  readonly bulkTimeoutMs?: number
}

/** The parts of the Redis journal, wired together. */
export interface RedisJournalParts {
  readonly journal: RedisRequestJournal
  readonly fleet: FleetStore
  readonly keys: JournalKeys
  readonly connection: RedisConnection
  close: () => Promise<void>
}

export function createRedisJournal (settings: RedisJournalSettings, deps: Pick<JournalDeps, 'metrics' | 'log'>): RedisJournalParts {
  const { metrics, log } = deps
  const keys = journalKeys(settings.namespace, settings.partitions)
  const probeKeys = keys.partitions.map((partition) => partition.leases)
  const connection = new RedisConnection({ target: settings.target, instanceId: settings.instanceId, commandTimeoutMs: settings.commandTimeoutMs, ...(settings.bulkTimeoutMs !== undefined && { bulkTimeoutMs: settings.bulkTimeoutMs }), probeKeys, metrics, log })
  const replicated = settings.minReplicas > 0
    ? new ReplicatedWrites(connection, { minReplicas: settings.minReplicas, timeoutMs: settings.replicaTimeoutMs, probeKeys, metrics, log })
    : undefined
  const stores = { keys, resultTtlSeconds: settings.resultTtlSeconds, leaseTtlMs: settings.leaseTtlMs }
  const fleet = new FleetStore(connection, stores)
  const journal = new RedisRequestJournal(connection, { ...stores, leaseCreated: (partition) => fleet.leaseCreated(partition), ...(replicated !== undefined && { replicated }) })
  return {
    journal,
    fleet,
    keys,
    connection,
    close: async () => {
      fleet.stopReading()
      await journal.close()
      await replicated?.close()
      await connection.close()
    }
  }
}

/** Like every key, the namespace's description expires: a week after the last instance of its fleet started. */
const META_TTL_MS = 7 * 24 * 3600 * 1000

/**
 * Records this namespace's layout and partition count on first use, and refuses one
 * written otherwise: instances that disagree on either would not find each other's
 * requests. Returns why, or undefined when this instance can use the namespace.
 */
async function checkLayout (redis: RedisConnection, keys: JournalKeys): Promise<string | undefined> {
  const partitions = String(keys.partitions.length)
  const [[, legacy], , , [, meta]] = await redis.client.multi()
    .exists(keys.legacyLeases)
    .hsetnx(keys.meta, 'layout', JOURNAL_LAYOUT)
    .pexpire(keys.meta, META_TTL_MS)
    .hgetall(keys.meta)
    .exec() as [[null, number], [null, number], [null, number], [null, Record<string, string>]]
  if (legacy === 1) return `JOURNAL_NAMESPACE: namespace '${keys.namespace}' holds requests of an earlier spotgate release (another key layout); drain that fleet or use a new namespace`
  if (meta.layout !== JOURNAL_LAYOUT) return `JOURNAL_NAMESPACE: namespace '${keys.namespace}' was written with journal layout ${meta.layout}, this release reads layout ${JOURNAL_LAYOUT}; use a new namespace`
  if (meta.partitions === undefined) {
    await redis.client.hsetnx(keys.meta, 'partitions', partitions)
    return checkLayout(redis, keys)
  }
  if (meta.partitions !== partitions) return `JOURNAL_PARTITIONS: namespace '${keys.namespace}' is spread over ${meta.partitions} partitions, this instance was given ${partitions}; every instance of a fleet needs the same value`
  return undefined
}
