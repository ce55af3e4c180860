import { setTimeout as sleep } from 'node:timers/promises'

/**
 * A client that retries the way spotgate's contract asks a real one to: every attempt
 * carries the same Idempotency-Key; a 202 or a 503 with `Location` means "accepted,
 * answer pending" and is followed by long-polls of that location; a 503 or 429
 * without one, or a dropped connection, is retried after a short pause. Bounded by
 * `deadline`.
 */

export type Ending =
  /** A 200 with the answer. */
  | 'answered'
  /** Accepted (a Location was seen) but no answer by the deadline. */
  | 'lost'
  /** An error status that is a final answer, or never accepted by the deadline. */
  | 'failed'

export interface LogicalRequest {
  readonly key: string
  ending: Ending
  /** POSTs sent (1 when the first one was answered). */
  posts: number
  /** GETs of the Location. */
  polls: number
  /** Statuses and errors in order, e.g. `[503, 200]`, for reports. */
  readonly trail: Array<number | string>
  /** The 200's body, parsed. */
  answer?: unknown
  /** The answer came with `Idempotent-Replayed: true`. */
  replayed: boolean
  /** Milliseconds from the first POST to the ending. */
  ms: number
}

export interface SendOptions {
  readonly baseUrl: string
  readonly key: string
  readonly body: unknown
  /** Date.now() after which the client gives up. */
  readonly deadline: number
  /** Per-HTTP-request timeout. */
  readonly timeoutMs?: number
  /** `wait` of each long-poll. */
  readonly pollWaitMs?: number
}

export async function inferUntilAnswered (options: SendOptions): Promise<LogicalRequest> {
  const started = Date.now()
  const timeoutMs = options.timeoutMs ?? 15_000
  const result: LogicalRequest = { key: options.key, ending: 'failed', posts: 0, polls: 0, trail: [], replayed: false, ms: 0 }
  let location: string | undefined
  const finish = (ending: Ending): LogicalRequest => {
    result.ending = ending
    result.ms = Date.now() - started
    return result
  }
  while (Date.now() < options.deadline) {
    let response: Response
    try {
      if (location === undefined) {
        result.posts++
        response = await fetch(`${options.baseUrl}/infer`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': options.key },
          body: JSON.stringify(options.body),
          signal: AbortSignal.timeout(timeoutMs)
        })
      } else {
        result.polls++
        const separator = location.includes('?') ? '&' : '?'
        response = await fetch(`${options.baseUrl}${location}${separator}wait=${options.pollWaitMs ?? 5000}`, { signal: AbortSignal.timeout(timeoutMs) })
      }
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause
      result.trail.push(cause?.code ?? (error as Error).name)
      await sleep(100)
      continue
    }
    const text = await response.text().catch(() => '')
    result.trail.push(response.status)
    const pending = response.headers.get('location')
    if (response.status === 200) {
      try { result.answer = JSON.parse(text) } catch { result.answer = text }
      result.replayed = response.headers.get('idempotent-replayed') === 'true'
      return finish('answered')
    }
    if ((response.status === 202 || response.status === 503) && pending !== null) {
      location = pending.startsWith('http') ? new URL(pending).pathname : pending
      if (response.status === 503) await sleep(retryAfterMs(response))
      continue
    }
    if (response.status === 202) continue
    if (response.status === 503 || response.status === 429) {
      await sleep(retryAfterMs(response))
      continue
    }
    // A load balancer's 502 or 504: the instance it chose went away mid-request. The key
    // makes sending it again safe, as a real client would.
    if (response.status === 502 || response.status === 504) {
      await sleep(100)
      continue
    }
    // 404 while polling: the record is unknown here (expired, or another namespace): send it again.
    if (response.status === 404 && location !== undefined) {
      location = undefined
      continue
    }
    return finish('failed')
  }
  return finish(location === undefined ? 'failed' : 'lost')
}

/** Retry-After in ms, capped at one second: a demo client should not sit idle. */
function retryAfterMs (response: Response): number {
  const seconds = Number(response.headers.get('retry-after'))
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(1000, seconds * 1000) : 200
}

export interface LoadOptions {
  readonly baseUrl: string
  /** Concurrent clients, each sending its next logical request when the previous one ends. */
  readonly concurrency: number
  /** New logical requests start only during this window. */
  readonly durationMs: number
  /** How long each logical request may take, retries and polls included. */
  readonly requestDeadlineMs: number
  /** Body of logical request `n`. */
  readonly body: (n: number) => unknown
  readonly keyPrefix: string
  readonly pauseMs?: number
  readonly stop?: AbortSignal
}

/** A bounded closed-loop load of logical requests; resolves with every one of them once all have ended. */
export async function runLoad (options: LoadOptions): Promise<LogicalRequest[]> {
  const results: LogicalRequest[] = []
  const until = Date.now() + options.durationMs
  let next = 0
  async function client (): Promise<void> {
    while (Date.now() < until && options.stop?.aborted !== true) {
      const n = next++
      results.push(await inferUntilAnswered({
        baseUrl: options.baseUrl,
        key: `${options.keyPrefix}-${n}`,
        body: options.body(n),
        deadline: Date.now() + options.requestDeadlineMs
      }))
      if (options.pauseMs !== undefined) await sleep(options.pauseMs)
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, () => client()))
  return results
}

/** Counts of endings and of how the answers came, for reports and assertion messages. */
export function summarize (results: readonly LogicalRequest[]): { sent: number, answered: number, lost: number, failed: number, retriedByClient: number, polled: number, replayedAnswers: number } {
  return {
    sent: results.length,
    answered: results.filter((r) => r.ending === 'answered').length,
    lost: results.filter((r) => r.ending === 'lost').length,
    failed: results.filter((r) => r.ending === 'failed').length,
    retriedByClient: results.filter((r) => r.posts > 1).length,
    polled: results.filter((r) => r.polls > 0).length,
    replayedAnswers: results.filter((r) => r.replayed).length
  }
}
