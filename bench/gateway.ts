import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseSamples } from '../scripts/lib/process.js'
import { freePort, startChild, waitFor200, type Child } from './processes.js'

/** The compiled entry, as package.json's `bin` names it. */
const ENTRY = fileURLToPath(new URL('../src/main.js', import.meta.url))

/** Every variable the gateway reads, so a developer's shell cannot change what the bench measures. */
const GATEWAY_VARIABLES = new Set([
  'HOST', 'PORT', 'MODEL_REPOSITORY', 'REDIS_URL', 'REDIS_COMMAND_TIMEOUT_MS', 'JOURNAL_NAMESPACE', 'INSTANCE_ID',
  'EXECUTION_PROVIDERS', 'CUDA_DEVICE_ID', 'MODEL_INSTANCES', 'INTRA_OP_THREADS', 'MAX_BATCH_SIZE',
  'MAX_QUEUE_DELAY_US', 'MAX_QUEUE_SIZE', 'PREEMPTION_SOURCES', 'AWS_METADATA_URL', 'GCP_METADATA_URL',
  'AZURE_METADATA_URL', 'NOTICE_POLL_INTERVAL_MS', 'AWS_REBALANCE_DRAINS', 'DRAIN_GRACE_MS', 'DRAIN_TIMEOUT_MS',
  'DRAIN_SAFETY_MARGIN_MS', 'LEASE_TTL_MS', 'REPLAY_CONCURRENCY', 'REPLAY_MAX_ATTEMPTS', 'RESULT_TTL_S',
  'IDEMPOTENCY_WAIT_MS', 'MAX_POLL_WAIT_MS', 'ADMIN_TOKEN', 'MAX_BODY_BYTES', 'KEEP_ALIVE_TIMEOUT_MS',
  'PRESSURE_MAX_EVENT_LOOP_DELAY_MS', 'PRESSURE_MAX_HEAP_BYTES', 'PRESSURE_MAX_RSS_BYTES', 'LOG_LEVEL',
  'NODE_OPTIONS'
])

export interface GatewayOptions {
  readonly repo: string
  /** Unset: the in-process journal. */
  readonly redisUrl?: string
  /** Node flags before the entry, e.g. --cpu-prof. */
  readonly nodeArgs?: readonly string[]
  readonly env?: Record<string, string>
}

export interface RunningGateway {
  readonly url: string
  readonly pid: number
  readonly child: Child
  /** /metrics, parsed: `name{labels}` → value (read with sumSamples). */
  scrape: () => Promise<Map<string, number>>
  /** SIGTERM: the gateway drains (no grace period) and exits, writing any --cpu-prof profile. */
  stop: () => Promise<void>
}

/** A real `node dist/src/main.js` on loopback, as a process supervisor would start it. */
export async function startGateway (options: GatewayOptions): Promise<RunningGateway> {
  const port = await freePort()
  const cwd = await mkdtemp(join(tmpdir(), 'spotgate-bench-cwd-'))
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !GATEWAY_VARIABLES.has(key)) env[key] = value
  Object.assign(env, {
    HOST: '127.0.0.1',
    PORT: String(port),
    MODEL_REPOSITORY: options.repo,
    EXECUTION_PROVIDERS: 'cpu',
    PREEMPTION_SOURCES: 'none',
    LOG_LEVEL: 'warn',
    DRAIN_GRACE_MS: '0',
    DRAIN_TIMEOUT_MS: '5000',
    ...(options.redisUrl !== undefined && { REDIS_URL: options.redisUrl }),
    ...options.env
  })
  // cwd is an empty directory, so no stray .env is read.
  const child = startChild(process.execPath, [...(options.nodeArgs ?? []), ENTRY], { cwd, env })
  const url = `http://127.0.0.1:${port}`
  try {
    await waitFor200(`${url}/health/ready`, child)
  } catch (error) {
    await child.stop(1000)
    await rm(cwd, { recursive: true, force: true })
    throw error
  }
  return {
    url,
    pid: child.pid,
    child,
    scrape: async () => parseSamples(await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text()),
    stop: async () => {
      await child.stop(15_000)
      await rm(cwd, { recursive: true, force: true })
    }
  }
}
