import { checkAnswer, type WorkItem } from './workload.js'
import { pause } from './util.js'

/** Where a client sends a request: one instance, or a load balancer in front of them. */
export interface Endpoint {
  readonly name: string
  readonly url: string
}

/** Picks the endpoint a request goes to. */
export interface Balancer {
  /** A routable endpoint, preferring one other than `avoid`; undefined while none is. */
  pick: (avoid?: Endpoint) => Endpoint | undefined
}

export type Fate = 'pending' | 'answered' | 'wrong' | 'lost'

/** One logical request: an Idempotency-Key and everything the client did to get its answer. */
export interface LogicalRequest {
  readonly id: string
  readonly item: WorkItem
  readonly sentAt: number
  fate: Fate
  answeredAt?: number
  /** Answered by the first POST, with nothing retried. */
  firstTime: boolean
  posts: number
  polls: number
  /** Some answer was 503 with a Location (a drain handed it to the fleet). */
  handedOff: boolean
  /** Some answer said it was accepted and pending (202, or 503 + Location). */
  acceptedPending: boolean
  /** A poll said 404 after the request had been accepted: the journal forgot it. */
  forgotten: boolean
  /** Sent with `Prefer: respond-async`: accepted with 202, then polled. */
  readonly async: boolean
  wrongReason?: string
  /** The endpoint of the exchange now open, if any, and of the last POST. */
  open?: Endpoint
  lastPost?: Endpoint
  /** Filled in at the end from the journal record: claims by a replaying instance. */
  replayAttempts?: number
}

export interface ClientSettings {
  /** The request is given up as lost after this time (epoch ms). */
  readonly deadline: () => number
  readonly pollWaitMs: number
  readonly postTimeoutMs: number
  readonly signal: AbortSignal
  /** Told of each 503 without a Location: the request was refused, not accepted. */
  readonly onRefused?: (at: number) => void
}

const POLL_SLACK_MS = 3000

/**
 * Drives one request to its answer as a careful client does: POST with the key; on 200
 * done; on 202 or 503 + Location poll GET /infer/{id}?wait= on any instance; on a 503
 * without Location, a 429 or a broken connection, POST again (same key) elsewhere after
 * a short backoff. Bounded by the deadline.
 */
export async function runRequest (request: LogicalRequest, balancer: Balancer, settings: ClientSettings): Promise<void> {
  const { signal } = settings
  let polling = false
  let backoff = 50
  let last: Endpoint | undefined
  const retryLater = async (): Promise<void> => {
    await pause(backoff * (0.5 + Math.random()), signal)
    backoff = Math.min(500, backoff * 2)
  }
  while (request.fate === 'pending') {
    if (signal.aborted || Date.now() > settings.deadline()) {
      request.fate = 'lost'
      return
    }
    const instance = balancer.pick(last)
    if (instance === undefined) {
      await pause(50, signal)
      continue
    }
    last = instance
    request.open = instance
    try {
      if (polling) {
        request.polls++
        const response = await fetch(`${instance.url}/infer/${encodeURIComponent(request.id)}?wait=${settings.pollWaitMs}`, {
          signal: AbortSignal.any([signal, AbortSignal.timeout(settings.pollWaitMs + POLL_SLACK_MS)])
        })
        const text = await response.text()
        if (response.status === 200 || response.status === 500) {
          finish(request, response.status, text)
        } else if (response.status === 202) {
          backoff = 50
        } else if (response.status === 404) {
          // Unknown: the POST that broke never reached the journal. Send it again.
          if (request.acceptedPending) request.forgotten = true
          polling = false
        } else {
          await retryLater()
        }
      } else {
        request.posts++
        request.lastPost = instance
        const response = await fetch(`${instance.url}/v2/models/${request.item.model}/infer`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': request.id, ...(request.async && { prefer: 'respond-async' }) },
          body: JSON.stringify(request.item.body),
          signal: AbortSignal.any([signal, AbortSignal.timeout(settings.postTimeoutMs)])
        })
        const text = await response.text()
        const hasLocation = response.headers.get('location') !== null
        if (response.status === 200 || response.status === 500) {
          finish(request, response.status, text)
          if (request.posts === 1 && request.polls === 0 && (request.fate as Fate) === 'answered') request.firstTime = true
        } else if (response.status === 202 || (response.status === 503 && hasLocation)) {
          request.acceptedPending = true
          if (response.status === 503) request.handedOff = true
          polling = true
          backoff = 50
        } else if (response.status === 503 || response.status === 429) {
          if (response.status === 503) settings.onRefused?.(Date.now())
          await retryLater()
        } else {
          // 400, 404, 413, 415, 422: this request can never succeed; the harness or the gateway is wrong.
          request.fate = 'wrong'
          request.wrongReason = `POST answered ${response.status}: ${text.slice(0, 200)}`
        }
      }
    } catch {
      // Connection refused or reset (a killed instance), or a timeout: try again elsewhere.
      await retryLater()
    } finally {
      request.open = undefined
    }
  }
}

function finish (request: LogicalRequest, status: number, text: string): void {
  request.answeredAt = Date.now()
  if (status !== 200) {
    request.fate = 'wrong'
    request.wrongReason = `final answer ${status}: ${text.slice(0, 200)}`
    return
  }
  const problem = checkAnswer(request.item, request.id, text)
  request.fate = problem === undefined ? 'answered' : 'wrong'
  if (problem !== undefined) request.wrongReason = problem
}
