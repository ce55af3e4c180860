import { availableParallelism, hostname } from 'node:os'
import { resolve } from 'node:path'
import envSchema from 'env-schema'
import { ConfigError } from './config-error.js'
import type { ModelConfig } from './inference/model-repository.js'
import type { ExecutionProvider } from './inference/providers.js'
import type { PressureLimits } from './http/plugins/under-pressure.js'

export const PREEMPTION_SOURCES = ['aws', 'gcp', 'azure'] as const
export type PreemptionSource = (typeof PREEMPTION_SOURCES)[number]

const integer = (defaultValue: number, minimum = 0, maximum = 2 ** 31 - 1) =>
  ({ type: 'integer', default: defaultValue, minimum, maximum }) as const
const optionalInteger = (minimum = 0, maximum = 2 ** 31 - 1) => ({ type: 'integer', minimum, maximum }) as const
const httpUrl = (defaultValue: string) => ({ type: 'string', pattern: '^https?://[^\\s]+$', default: defaultValue }) as const

// The one place that reads the environment. Each key is documented in .env.example and the README.
const schema = {
  type: 'object',
  properties: {
    HOST: { type: 'string', minLength: 1, default: '0.0.0.0' },
    PORT: integer(8080, 0, 65535),
    MODEL_REPOSITORY: { type: 'string', minLength: 1, default: './models' },
    REDIS_URL: { type: 'string', pattern: '^(rediss?://\\S+)?$' },
    REDIS_COMMAND_TIMEOUT_MS: integer(1000, 10),
    JOURNAL_NAMESPACE: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$', default: 'default' },
    INSTANCE_ID: { type: 'string', pattern: '^[A-Za-z0-9._:-]{0,128}$' },
    EXECUTION_PROVIDERS: { type: 'string', pattern: '^\\s*(cuda|cpu)\\s*(,\\s*(cuda|cpu)\\s*)*$', default: 'cuda,cpu' },
    CUDA_DEVICE_ID: integer(0, 0, 255),
    MODEL_INSTANCES: optionalInteger(1, 256),
    INTRA_OP_THREADS: integer(1, 0, 1024),
    MAX_BATCH_SIZE: integer(32, 0, 65536),
    MAX_QUEUE_DELAY_US: integer(0, 0, 10_000_000),
    MAX_QUEUE_SIZE: integer(1024, 1),
    PREEMPTION_SOURCES: { type: 'string', pattern: '^\\s*(auto|none|(aws|gcp|azure)\\s*(,\\s*(aws|gcp|azure)\\s*)*)\\s*$', default: 'auto' },
    AWS_METADATA_URL: httpUrl('http://169.254.169.254'),
    GCP_METADATA_URL: httpUrl('http://metadata.google.internal'),
    AZURE_METADATA_URL: httpUrl('http://169.254.169.254'),
    NOTICE_POLL_INTERVAL_MS: integer(1000, 50),
    AWS_REBALANCE_DRAINS: { type: 'string', pattern: '^\\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo]|[Oo][Nn]|[Oo][Ff][Ff]|1|0)\\s*$', default: 'false' },
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
    LOG_LEVEL: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' }
  }
} as const

export interface Config {
  readonly host: string
  readonly port: number
  readonly modelRepository: string
  readonly redisUrl?: string
  readonly redisCommandTimeoutMs: number
  readonly journalNamespace: string
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
}

type Env = Record<keyof typeof schema.properties, unknown>

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
  const message = first.params?.pattern !== undefined ? 'has an invalid value' : first.message
  return new ConfigError(`${variable}: ${message ?? 'invalid value'}`)
}

function list (value: unknown): string[] {
  return String(value).split(',').map((s) => s.trim()).filter(Boolean)
}

function optional (value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

function buildConfig (raw: Env): Config {
  const sources = list(raw.PREEMPTION_SOURCES)
  const providers = [...new Set(list(raw.EXECUTION_PROVIDERS))] as ExecutionProvider[]
  const defaultInstances = Math.max(1, availableParallelism())
  const config: Config = {
    host: raw.HOST as string,
    port: raw.PORT as number,
    modelRepository: resolve(raw.MODEL_REPOSITORY as string),
    ...(optional(raw.REDIS_URL) !== undefined && { redisUrl: optional(raw.REDIS_URL) }),
    redisCommandTimeoutMs: raw.REDIS_COMMAND_TIMEOUT_MS as number,
    journalNamespace: raw.JOURNAL_NAMESPACE as string,
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
    awsRebalanceDrains: /^\s*(true|yes|on|1)\s*$/i.test(raw.AWS_REBALANCE_DRAINS as string),
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
    logLevel: raw.LOG_LEVEL as string
  }
  if (sources.length > 1 && (sources.includes('auto') || sources.includes('none'))) {
    throw new ConfigError('PREEMPTION_SOURCES: auto and none cannot be combined with other sources')
  }
  return Object.freeze(config)
}
