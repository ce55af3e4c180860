import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gatewayEnvironment } from '../scripts/lib/gateway-env.js'
import { GATEWAY_ENTRY as ENTRY } from '../scripts/lib/paths.js'
import { parseSamples } from '../scripts/lib/process.js'
import { freePort, startChild, waitFor200, type Child } from './processes.js'

export interface GatewayOptions {
  readonly repo: string
  /** Node flags before the entry, e.g. --cpu-prof. */
  readonly nodeArgs?: readonly string[]
  readonly env?: Record<string, string>
}

const THREAD_MARKER = fileURLToPath(new URL('./thread-marker.js', import.meta.url))

export interface RunningGateway {
  readonly url: string
  readonly pid: number
  readonly child: Child
  /** /metrics, parsed: `name{labels}` → value (read with sumSamples). */
  scrape: () => Promise<Map<string, number>>
  /** OS thread ids of the gateway's worker threads (its model instances) started so far. */
  workerThreads: () => Promise<number[]>
  /** SIGTERM: the gateway drains (no grace period) and exits, writing any --cpu-prof profile. */
  stop: () => Promise<void>
}

/** A real `node dist/src/main.js` on loopback, as a process supervisor would start it. */
export async function startGateway (options: GatewayOptions): Promise<RunningGateway> {
  const port = await freePort()
  const cwd = await mkdtemp(join(tmpdir(), 'spotgate-bench-cwd-'))
  const markers = join(cwd, 'threads')
  await mkdir(markers)
  const env = gatewayEnvironment({
    HOST: '127.0.0.1',
    PORT: String(port),
    MODEL_REPOSITORY: options.repo,
    EXECUTION_PROVIDERS: 'cpu',
    PREEMPTION_SOURCES: 'none',
    LOG_LEVEL: 'warn',
    DRAIN_GRACE_MS: '0',
    DRAIN_TIMEOUT_MS: '5000',
    ...options.env,
    BENCH_THREAD_MARKERS: markers
  })
  // cwd holds no .env, so no stray settings are read.
  const child = startChild(process.execPath, ['--import', THREAD_MARKER, ...(options.nodeArgs ?? []), ENTRY], { cwd, env })
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
    workerThreads: async () => (await readdir(markers)).map(Number),
    stop: async () => {
      await child.stop(15_000)
      await rm(cwd, { recursive: true, force: true })
    }
  }
}
