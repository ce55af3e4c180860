import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { withDeadline } from './deadline.js'

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

export interface LoadEvents {
  /** Learns the load generator's pid, e.g. to watch its CPU. */
  readonly onStart?: (pid: number) => void
  /** Called when the warm-up is over and the measured window begins. */
  readonly onWindowStart?: () => void
}

/** Beyond its own delay, warm-up and duration, how long a load run may take (start-up, the last answers, writing the result). */
const LOAD_SLACK_MS = 30_000

/** Runs one load in a child process and resolves with what it measured. */
export function runLoad (request: LoadRequest, events: LoadEvents = {}): Promise<LoadResult> {
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
  const child = spawn(process.execPath, [CHILD], { stdio: ['pipe', 'pipe', 'pipe'] })
  const finished = new Promise<LoadResult>((resolve, reject) => {
    if (child.pid !== undefined) events.onStart?.(child.pid)
    let stdout = ''
    let stderr = ''
    let result: string | undefined
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8')
      let newline: number
      while ((newline = stdout.indexOf('\n')) !== -1) {
        const line = stdout.slice(0, newline)
        stdout = stdout.slice(newline + 1)
        if (line.startsWith('{"event":"window-start"')) events.onWindowStart?.()
        else if (line !== '') result = line
      }
    })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8') })
    child.once('error', reject)
    child.once('close', (code) => {
      if (code !== 0) return reject(new Error(`load generator exited with ${code}: ${stderr.trim().slice(-2000)}`))
      try {
        resolve(JSON.parse(result ?? stdout) as LoadResult)
      } catch (error) {
        reject(new Error(`load generator wrote no result (${(error as Error).message}): ${stderr.trim().slice(-2000)}`))
      }
    })
    child.stdin.end(JSON.stringify(spec))
  })
  const boundMs = spec.delayMs + (spec.warmupSeconds + spec.durationSeconds) * 1000 + LOAD_SLACK_MS
  return withDeadline(finished, boundMs, `load run against ${spec.url}`, () => child.kill('SIGKILL'))
}
