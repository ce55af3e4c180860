import { availableParallelism, hostname } from 'node:os'
import { resolve } from 'node:path'
import envSchema from 'env-schema'
import { ConfigError } from './config-error.js'
import { parseHostPorts, redisUrlProblem, type RedisAuth, type RedisTarget } from './journal/redis/target.js'
import type { ModelLoadFailure } from './inference/model-registry.js'
import type { Isolation } from './inference/model-instance.js'
import type { ModelConfig } from './inference/model-repository.js'
import type { ExecutionProvider } from './inference/providers.js'

export const PREEMPTION_SOURCES = ['aws', 'gcp', 'azure'] as const
export type PreemptionSource = (typeof PREEMPTION_SOURCES)[number]

const integer = (defaultValue: number, minimum = 0, maximum = 2 ** 31 - 1) =>
  ({ type: 'integer', default: defaultValue, minimum, maximum }) as const
const optionalInteger = (minimum = 0, maximum = 2 ** 31 - 1) => ({ type: 'integer', minimum, maximum }) as const
const httpUrl = (defaultValue: string) => ({ type: 'string', pattern: '^https?://[^\\s]+$', default: defaultValue }) as const
/** true/false, yes/no, on/off, 1/0, any case. */
const BOOLEAN = (defaultValue: 'true' | 'false') =>
  ({ type: 'string', pattern: '^\\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo]|[Oo][Nn]|[Oo][Ff][Ff]|1|0)\\s*$', default: defaultValue }) as const
const isTrue = (value: unknown): boolean => /^\s*(true|yes|on|1)\s*$/i.test(String(value))

// The one place that reads the environment. Each key is documented in .env.example and the README.
const schema = {
  type: 'object',
  properties: {
    HOST: { type: 'string', minLength: 1, default: '0.0.0.0' },
    PORT: integer(8080, 0, 65535),
    MODEL_REPOSITORY: { type: 'string', minLength: 1, default: './models' },
    MODEL_LOAD_FAILURE: { type: 'string', enum: ['exit', 'skip'], default: 'exit' },
    MODEL_ISOLATION: { type: 'string', enum: ['thread', 'process'], default: 'process' },
    REDIS_URL: { type: 'string', pattern: '^(rediss?://\\S+)?$' },
    REDIS_SENTINELS: { type: 'string' },
    REDIS_SENTINEL_MASTER: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,128}$' },
    REDIS_SENTINEL_PASSWORD: { type: 'string' },
    REDIS_CLUSTER_NODES: { type: 'string' },
    REDIS_USERNAME: { type: 'string' },
    REDIS_PASSWORD: { type: 'string' },
    REDIS_TLS: BOOLEAN('false'),
    REDIS_COMMAND_TIMEOUT_MS: integer(1000, 10),
    JOURNAL_MIN_REPLICAS: integer(0, 0, 16),
    JOURNAL_REPLICA_TIMEOUT_MS: integer(500, 1, 60_000),
    JOURNAL_NAMESPACE: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$', default: 'default' },
    JOURNAL_PARTITIONS: optionalInteger(1, 1024),
    INSTANCE_ID: { type: 'string', pattern: '^[A-Za-z0-9._:-]{0,128}$' },
    EXECUTION_PROVIDERS: { type: 'string', pattern: '^\\s*(cuda|cpu)\\s*(,\\s*(cuda|cpu)\\s*)*$', default: 'cuda,cpu' },
    CUDA_DEVICE_ID: integer(0, 0, 255),
    MODEL_INSTANCES: optionalInteger(1, 256),
    INTRA_OP_THREADS: integer(1, 0, 1024),
    MAX_BATCH_SIZE: integer(32, 0, 65536),
    MAX_QUEUE_DELAY_US: integer(0, 0, 10_000_000),
    MAX_QUEUE_SIZE: integer(1024, 1, 1_000_000),
    PREEMPTION_SOURCES: { type: 'string', pattern: '^\\s*(auto|none|(aws|gcp|azure)\\s*(,\\s*(aws|gcp|azure)\\s*)*)\\s*$', default: 'auto' },
    AWS_METADATA_URL: httpUrl('http://169.254.169.254'),
    GCP_METADATA_URL: httpUrl('http://metadata.google.internal'),
    AZURE_METADATA_URL: httpUrl('http://169.254.169.254'),
    NOTICE_POLL_INTERVAL_MS: integer(1000, 50),
    AWS_REBALANCE_DRAINS: BOOLEAN('false'),
    DRAIN_GRACE_MS: integer(5000),
    DRAIN_TIMEOUT_MS: integer(25000, 1),
    DRAIN_SAFETY_MARGIN_MS: integer(5000),
    LEASE_TTL_MS: integer(5000, 500),
    REPLAY_CONCURRENCY: integer(4, 1, 1024),
    REPLAY_MAX_ATTEMPTS: integer(3, 1, 100),
    RESULT_TTL_S: integer(3600, 1),
    IDEMPOTENCY_WAIT_MS: integer(10000),
    MAX_POLL_WAIT_MS: integer(30000),
    ADMIN_TOKEN: { type: 'string' },
    MAX_BODY_BYTES: integer(16 * 1024 * 1024, 1024, 2 ** 30),
    KEEP_ALIVE_TIMEOUT_MS: integer(75000, 1000),
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: integer(1000),
    PRESSURE_MAX_HEAP_BYTES: integer(0, 0, Number.MAX_SAFE_INTEGER),
    PRESSURE_MAX_RSS_BYTES: integer(0, 0, Number.MAX_SAFE_INTEGER),
    LOG_LEVEL: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
    API_TOKEN: { type: 'string' },
    BATCH_STORAGE_URL: { type: 'string', pattern: '^(file|s3)://\\S+$', default: 'file://./data/batches' },
    S3_ENDPOINT: { type: 'string', pattern: '^(https?://\\S+)?$' },
    MAX_BATCH_FILE_BYTES: integer(100 * 1024 * 1024, 1, 2 ** 31 - 1),
    MAX_BATCH_LINES: integer(50_000, 1, 10_000_000),
    BATCH_SHARD_LINES: integer(100, 1, 100_000),
    BATCH_COMMIT_INTERVAL_MS: integer(1000, 10, 60_000),
    BATCH_CONCURRENCY: integer(32, 1, 4096),
    BATCH_SHARDS_PER_INSTANCE: integer(2, 1, 64),
    BATCH_MAX_ATTEMPTS: integer(3, 1, 100),
    BATCH_RETENTION_S: integer(30 * 24 * 3600, 60)
  }
} as const

export interface Config {
  readonly host: string
  readonly port: number
  readonly modelRepository: string
  /** A model version that cannot load at start-up: `exit` (code 78) or `skip` (serve the others). */
  readonly modelLoadFailure: ModelLoadFailure
  /** Where model instances run: child processes (stoppable at a drain's deadline) or worker threads. */
  readonly modelIsolation: Isolation
  /** The journal's Redis (unset: the in-process journal). */
  readonly redis?: RedisTarget
  /** Replicas that must have an accept (and a hand-off) before it counts (WAIT); 0: the primary's acknowledgement. */
  readonly journalMinReplicas: number
  readonly journalReplicaTimeoutMs: number
  readonly redisCommandTimeoutMs: number
  readonly journalNamespace: string
  /** Hash tags the journal is spread over; every instance of a fleet needs the same value. */
  readonly journalPartitions: number
  readonly instanceId: string
  readonly modelDefaults: ModelConfig
  readonly preemptionSources: 'auto' | readonly PreemptionSource[]
  readonly metadataUrls: Readonly<Record<PreemptionSource, string>>
  readonly noticePollIntervalMs: number
  /** Whether an AWS rebalance recommendation starts a drain (otherwise it is only logged and counted). */
  readonly awsRebalanceDrains: boolean
  readonly drainGraceMs: number
  readonly drainTimeoutMs: number
  readonly drainSafetyMarginMs: number
  readonly leaseTtlMs: number
  readonly replayConcurrency: number
  readonly replayMaxAttempts: number
  readonly resultTtlSeconds: number
  readonly idempotencyWaitMs: number
  readonly maxPollWaitMs: number
  readonly adminToken?: string
  readonly maxBodyBytes: number
  readonly keepAliveTimeoutMs: number
  readonly pressure: PressureLimits
  readonly logLevel: string
  /** Bearer token every data route needs (inference and `/v1`); unset: open. */
  readonly apiToken?: string
  readonly batch: BatchSettings
}

/** When the gateway refuses inference early and fails readiness (`@fastify/under-pressure`); 0 turns a check off. */
export interface PressureLimits {
  readonly maxEventLoopDelayMs: number
  readonly maxHeapUsedBytes: number
  readonly maxRssBytes: number
}

/** Batch jobs (docs/batches.md): where their files live and how work is cut and committed. */
export interface BatchSettings {
  /** `file:///dir` (relative paths resolved against the working directory) or `s3://bucket/prefix`. */
  readonly storageUrl: string
  /** An S3-compatible endpoint; unset: AWS's own. */
  readonly s3Endpoint?: string
  readonly maxFileBytes: number
  readonly maxLines: number
  /** Contiguous input lines per shard: the unit an instance claims. */
  readonly shardLines: number
  /** Finished lines are committed at least this often (and at the end of a shard). */
  readonly commitIntervalMs: number
  /** Batch lines one instance has queued or running at once. */
  readonly concurrency: number
  readonly shardsPerInstance: number
  /** Claims of one shard (hand-backs at a drain excluded) before its unfinished lines are given up. */
  readonly maxAttempts: number
  /** How long batch and file records are kept in Redis. */
  readonly retentionSeconds: number
}

type Env = Record<keyof typeof schema.properties, unknown>

/** Every environment variable the configuration reads. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(schema.properties)

/** Reads and validates the environment (and `.env` in the working directory); throws ConfigError naming the variable. */
export function loadConfig (env: NodeJS.ProcessEnv = process.env, dotenv = true): Config {
  let raw: Env
  try {
    raw = envSchema<Env>({ schema: structuredClone(schema) as never, data: withoutEmptyOptionals(env), env: false, dotenv: dotenv && { path: resolve('.env') } })
  } catch (error) {
    throw toConfigError(error)
  }
  return buildConfig(raw)
}

// `MODEL_INSTANCES=` (as an env file or a compose file writes an unset value) means unset, as it does for REDIS_URL.
const OPTIONAL = Object.entries(schema.properties).filter(([, property]) => !('default' in property)).map(([name]) => name)

function withoutEmptyOptionals (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const data = { ...env }
  for (const name of OPTIONAL) if (data[name] === '') delete data[name]
  return data
}

function toConfigError (error: unknown): ConfigError {
  const first = (error as { errors?: Array<{ instancePath: string, message?: string, params?: Record<string, unknown> }> }).errors?.[0]
  if (first === undefined) return new ConfigError((error as Error).message)
  const variable = first.instancePath.replace(/^\//, '')
  const allowed = first.params?.allowedValues
  const message = first.params?.pattern !== undefined
    ? 'has an invalid value'
    : Array.isArray(allowed)
      ? `must be one of ${allowed.join(', ')}`
      : first.params?.limit === 1 && /fewer than 1 characters/.test(first.message ?? '') ? 'must not be empty' : first.message
  return new ConfigError(`${variable}: ${message ?? 'invalid value'}`)
}

function list (value: unknown): string[] {
  return String(value).split(',').map((s) => s.trim()).filter(Boolean)
}

function optional (value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

function redisTarget (raw: Env): RedisTarget | undefined {
  const url = optional(raw.REDIS_URL)
  const sentinels = optional(raw.REDIS_SENTINELS)
  const cluster = optional(raw.REDIS_CLUSTER_NODES)
  const set = [url !== undefined && 'REDIS_URL', sentinels !== undefined && 'REDIS_SENTINELS', cluster !== undefined && 'REDIS_CLUSTER_NODES'].filter(Boolean)
  if (set.length > 1) throw new ConfigError(`${set.join(', ')}: give one of REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES, not ${set.length}`)
  const auth: RedisAuth = {
    ...(optional(raw.REDIS_USERNAME) !== undefined && { username: optional(raw.REDIS_USERNAME) }),
    ...(optional(raw.REDIS_PASSWORD) !== undefined && { password: optional(raw.REDIS_PASSWORD) }),
    tls: isTrue(raw.REDIS_TLS)
  }
  const hostPorts = (variable: string, value: string) => {
    try {
      return parseHostPorts(value)
    } catch (error) {
      throw new ConfigError(`${variable}: ${(error as Error).message}; expected host:port,host:port`)
    }
  }
  if (url !== undefined) {
    const problem = redisUrlProblem(url)
    if (problem !== undefined) throw new ConfigError(`REDIS_URL: ${problem}; expected redis[s]://[user:password@]host[:port][/db]`)
    return { mode: 'single', url }
  }
  if (sentinels !== undefined) {
    const master = optional(raw.REDIS_SENTINEL_MASTER)
    if (master === undefined) throw new ConfigError('REDIS_SENTINELS: needs REDIS_SENTINEL_MASTER, the name the Sentinels know the primary by')
    const sentinelPassword = optional(raw.REDIS_SENTINEL_PASSWORD)
    return { mode: 'sentinel', sentinels: hostPorts('REDIS_SENTINELS', sentinels), master, auth, ...(sentinelPassword !== undefined && { sentinelPassword }) }
  }
  if (cluster !== undefined) return { mode: 'cluster', nodes: hostPorts('REDIS_CLUSTER_NODES', cluster), auth }
  if (optional(raw.REDIS_SENTINEL_MASTER) !== undefined) throw new ConfigError('REDIS_SENTINEL_MASTER: needs REDIS_SENTINELS')
  return undefined
}

function buildConfig (raw: Env): Config {
  for (const name of ['API_TOKEN', 'ADMIN_TOKEN'] as const) {
    const value = raw[name]
    if (typeof value === 'string' && value !== '' && value.trim() === '') throw new ConfigError(`${name}: is only whitespace; set a token, or leave it unset for no authentication`)
    // HTTP strips the header value's edges, so such a token could never match (a secret written with echo ends in a newline).
    if (typeof value === 'string' && value !== value.trim()) throw new ConfigError(`${name}: starts or ends with whitespace (a trailing newline?), which no Authorization header can carry`)
  }
  const redis = redisTarget(raw)
  const sources = list(raw.PREEMPTION_SOURCES)
  const providers = [...new Set(list(raw.EXECUTION_PROVIDERS))] as ExecutionProvider[]
  const defaultInstances = Math.max(1, availableParallelism())
  const config: Config = {
    host: raw.HOST as string,
    port: raw.PORT as number,
    modelRepository: resolve(raw.MODEL_REPOSITORY as string),
    modelLoadFailure: raw.MODEL_LOAD_FAILURE as ModelLoadFailure,
    modelIsolation: raw.MODEL_ISOLATION as Isolation,
    ...(redis !== undefined && { redis }),
    journalMinReplicas: raw.JOURNAL_MIN_REPLICAS as number,
    journalReplicaTimeoutMs: raw.JOURNAL_REPLICA_TIMEOUT_MS as number,
    redisCommandTimeoutMs: raw.REDIS_COMMAND_TIMEOUT_MS as number,
    journalNamespace: raw.JOURNAL_NAMESPACE as string,
    // A cluster spreads partitions over its shards: more partitions than shards. One node needs one.
    journalPartitions: (raw.JOURNAL_PARTITIONS as number | undefined) ?? (redis?.mode === 'cluster' ? 16 : 1),
    instanceId: optional(raw.INSTANCE_ID) ?? `${hostname().replace(/[^A-Za-z0-9._:-]/g, '-')}-${process.pid}`,
    modelDefaults: {
      maxBatchSize: raw.MAX_BATCH_SIZE as number,
      dynamicBatching: true,
      maxQueueDelayMicros: raw.MAX_QUEUE_DELAY_US as number,
      preferredBatchSizes: [],
      maxQueueSize: raw.MAX_QUEUE_SIZE as number,
      instanceCount: (raw.MODEL_INSTANCES as number | undefined) ?? defaultInstances,
      intraOpThreads: raw.INTRA_OP_THREADS as number,
      executionProviders: providers,
      cudaDeviceId: raw.CUDA_DEVICE_ID as number,
      warmup: true
    },
    preemptionSources: sources.includes('auto') ? 'auto' : sources.filter((s): s is PreemptionSource => s !== 'none'),
    metadataUrls: {
      aws: (raw.AWS_METADATA_URL as string).replace(/\/+$/, ''),
      gcp: (raw.GCP_METADATA_URL as string).replace(/\/+$/, ''),
      azure: (raw.AZURE_METADATA_URL as string).replace(/\/+$/, '')
    },
    noticePollIntervalMs: raw.NOTICE_POLL_INTERVAL_MS as number,
    awsRebalanceDrains: isTrue(raw.AWS_REBALANCE_DRAINS),
    drainGraceMs: raw.DRAIN_GRACE_MS as number,
    drainTimeoutMs: raw.DRAIN_TIMEOUT_MS as number,
    drainSafetyMarginMs: raw.DRAIN_SAFETY_MARGIN_MS as number,
    leaseTtlMs: raw.LEASE_TTL_MS as number,
    replayConcurrency: raw.REPLAY_CONCURRENCY as number,
    replayMaxAttempts: raw.REPLAY_MAX_ATTEMPTS as number,
    resultTtlSeconds: raw.RESULT_TTL_S as number,
    idempotencyWaitMs: raw.IDEMPOTENCY_WAIT_MS as number,
    maxPollWaitMs: raw.MAX_POLL_WAIT_MS as number,
    ...(optional(raw.ADMIN_TOKEN) !== undefined && { adminToken: optional(raw.ADMIN_TOKEN) }),
    maxBodyBytes: raw.MAX_BODY_BYTES as number,
    keepAliveTimeoutMs: raw.KEEP_ALIVE_TIMEOUT_MS as number,
    pressure: {
      maxEventLoopDelayMs: raw.PRESSURE_MAX_EVENT_LOOP_DELAY_MS as number,
      maxHeapUsedBytes: raw.PRESSURE_MAX_HEAP_BYTES as number,
      maxRssBytes: raw.PRESSURE_MAX_RSS_BYTES as number
    },
    logLevel: raw.LOG_LEVEL as string,
    ...(optional(raw.API_TOKEN) !== undefined && { apiToken: optional(raw.API_TOKEN) }),
    batch: {
      storageUrl: raw.BATCH_STORAGE_URL as string,
      ...(optional(raw.S3_ENDPOINT) !== undefined && { s3Endpoint: optional(raw.S3_ENDPOINT) }),
      maxFileBytes: raw.MAX_BATCH_FILE_BYTES as number,
      maxLines: raw.MAX_BATCH_LINES as number,
      shardLines: raw.BATCH_SHARD_LINES as number,
      commitIntervalMs: raw.BATCH_COMMIT_INTERVAL_MS as number,
      concurrency: raw.BATCH_CONCURRENCY as number,
      shardsPerInstance: raw.BATCH_SHARDS_PER_INSTANCE as number,
      maxAttempts: raw.BATCH_MAX_ATTEMPTS as number,
      retentionSeconds: raw.BATCH_RETENTION_S as number
    }
  }
  if (sources.length > 1 && (sources.includes('auto') || sources.includes('none'))) {
    throw new ConfigError('PREEMPTION_SOURCES: auto and none cannot be combined with other sources')
  }
  return Object.freeze(config)
}
