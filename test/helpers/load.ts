import { performance } from 'node:perf_hooks'

/** What one request of a load run ended with: an HTTP answer, or the client error (a timeout, a reset). */
export interface LoadSample {
  readonly seq: number
  readonly client: number
  /** Milliseconds since the run started (performance.now() based). */
  readonly startedAt: number
  readonly endedAt: number
  readonly status?: number
  readonly headers?: Headers
  readonly body?: string
  readonly error?: string
}

export interface LoadOptions {
  /** Concurrent clients, each sending its next request when the previous one ended. */
  readonly concurrency: number
  readonly durationMs: number
  /** Per-request client timeout; a request still unanswered then is recorded as an error. */
  readonly timeoutMs: number
  /** Makes request number `seq`; it must honour `signal`. */
  readonly send: (seq: number, signal: AbortSignal) => Promise<Response>
  /** Pause between one client's requests, so a fast model does not saturate the machine. */
  readonly pauseMs?: number
}

export interface LoadRun {
  /** performance.now() when the run started, to place other events on the samples' clock. */
  readonly origin: number
  readonly done: Promise<LoadSample[]>
}

/**
 * A bounded closed-loop load: `concurrency` clients send requests back to back for
 * `durationMs`, each with its own timeout, and every outcome is recorded.
 */
export function startLoad (options: LoadOptions): LoadRun {
  const origin = performance.now()
  const samples: LoadSample[] = []
  let seq = 0
  const clock = (): number => performance.now() - origin
  async function client (index: number): Promise<void> {
    while (clock() < options.durationMs) {
      const n = seq++
      const startedAt = clock()
      try {
        const response = await options.send(n, AbortSignal.timeout(options.timeoutMs))
        const body = await response.text()
        samples.push({ seq: n, client: index, startedAt, endedAt: clock(), status: response.status, headers: response.headers, body })
      } catch (error) {
        const cause = (error as { cause?: { code?: string } }).cause
        samples.push({ seq: n, client: index, startedAt, endedAt: clock(), error: `${(error as Error).name}: ${(error as Error).message}${cause?.code !== undefined ? ` (${cause.code})` : ''}` })
      }
      if (options.pauseMs !== undefined && options.pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, options.pauseMs))
    }
  }
  const done = Promise.all(Array.from({ length: options.concurrency }, (_, i) => client(i))).then(() => samples.sort((a, b) => a.seq - b.seq))
  return { origin, done }
}

/** Counts samples by status (or `error`), for assertion messages. */
export function tally (samples: readonly LoadSample[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const s of samples) {
    const key = s.error !== undefined ? 'error' : String(s.status)
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}
