import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

// HTTP load runs: autocannon in a child process (load-child.ts), so the load and the
// health probe each have their own event loop and neither delays the other's timing.

export interface LoadSpec {
  readonly url: string
  readonly method: 'GET' | 'POST'
  readonly connections: number
  readonly headers: Record<string, string>
  readonly bodyBase64?: string
  /** Requests per second over all connections; unset: as fast as answers come. */
  readonly ratePerSecond?: number
  /** Wait this long before starting (lines a probe up with another run's measured window). */
  readonly delayMs: number
  readonly warmupSeconds: number
  readonly durationSeconds: number
}

export interface LoadResult {
  /** 2xx answers in the measured window. */
  readonly ok: number
  readonly non2xx: number
  readonly errors: number
  readonly timeouts: number
  readonly statusCounts: Record<string, number>
  readonly elapsedSeconds: number
  /** The measured window on the monotonic clock (process.hrtime, µs): the clock of --cpu-prof samples. */
  readonly window: { readonly startUs: number, readonly endUs: number }
  /** 2xx answers per second. */
  readonly requestsPerSecond: number
  /** Latency of 2xx answers, milliseconds. */
  readonly meanMs: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
}

export interface LoadRequest {
  readonly url: string
  readonly method?: 'GET' | 'POST'
  readonly connections: number
  readonly headers?: Record<string, string>
  readonly body?: Buffer | string
  readonly ratePerSecond?: number
  readonly delayMs?: number
  readonly warmupSeconds: number
  readonly durationSeconds: number
}

const CHILD = fileURLToPath(new URL('./load-child.js', import.meta.url))

export function percentile (sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[index]
}

export function summarise (raw: { ok: number, non2xx: number, errors: number, timeouts: number, statusCounts: Record<string, number>, elapsedSeconds: number, window: LoadResult['window'], latencies: number[] }): LoadResult {
  const sorted = Float64Array.from(raw.latencies).sort()
  const values = Array.from(sorted)
  return {
    ok: raw.ok,
    non2xx: raw.non2xx,
    errors: raw.errors,
    timeouts: raw.timeouts,
    statusCounts: raw.statusCounts,
    elapsedSeconds: raw.elapsedSeconds,
    window: raw.window,
    requestsPerSecond: raw.ok / raw.elapsedSeconds,
    meanMs: values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length,
    p50Ms: percentile(values, 50),
    p99Ms: percentile(values, 99),
    maxMs: values.length === 0 ? Number.NaN : values[values.length - 1]
  }
}

/** Runs one load in a child process and resolves with what it measured; `onStart` learns the child's pid. */
export function runLoad (request: LoadRequest, onStart?: (pid: number) => void): Promise<LoadResult> {
  const spec: LoadSpec = {
    url: request.url,
    method: request.method ?? (request.body === undefined ? 'GET' : 'POST'),
    connections: request.connections,
    headers: request.headers ?? {},
    ...(request.body !== undefined && { bodyBase64: Buffer.from(request.body).toString('base64') }),
    ...(request.ratePerSecond !== undefined && { ratePerSecond: request.ratePerSecond }),
    delayMs: request.delayMs ?? 0,
    warmupSeconds: request.warmupSeconds,
    durationSeconds: request.durationSeconds
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD], { stdio: ['pipe', 'pipe', 'pipe'] })
    if (child.pid !== undefined) onStart?.(child.pid)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString('utf8') })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8') })
    child.once('error', reject)
    child.once('close', (code) => {
      if (code !== 0) return reject(new Error(`load generator exited with ${code}: ${stderr.trim().slice(-2000)}`))
      try {
        resolve(JSON.parse(stdout) as LoadResult)
      } catch (error) {
        reject(new Error(`load generator wrote no result (${(error as Error).message}): ${stderr.trim().slice(-2000)}`))
      }
    })
    child.stdin.end(JSON.stringify(spec))
  })
}
