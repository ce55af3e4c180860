import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { SubmissionOutcome } from '../inference-service.js'
import type { ServedModel } from '../inference/model-registry.js'
import type { Metrics, Outcome } from '../metrics.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The model version a request is for, once the route knows it; labels its metrics. */
    servedModel: ServedModel | null
    /** How the request ended: set by the route from the service's outcome, or by the error handler. */
    outcome: Outcome | null
  }
  interface FastifyContextConfig {
    /** Marks routes whose requests count in spotgate_requests_total. */
    inference?: boolean
  }
}

/** The outcome label of an answer the service gave. */
export function outcomeOf (outcome: SubmissionOutcome, respondAsync: boolean): Outcome {
  if (outcome.kind === 'answered') return outcome.replayed ? 'replayed' : outcome.response.statusCode === 200 ? 'ok' : 'failed'
  if (outcome.kind === 'handed_off') return 'handed_off'
  return respondAsync ? 'accepted_async' : 'pending'
}

const OUTCOME_OF_ERROR: Record<string, Outcome> = {
  SPOTGATE_INVALID_REQUEST: 'invalid',
  SPOTGATE_UNSUPPORTED_MEDIA_TYPE: 'invalid',
  SPOTGATE_MODEL_NOT_FOUND: 'not_found',
  SPOTGATE_IDEMPOTENCY_KEY_REUSED: 'conflict',
  SPOTGATE_QUEUE_FULL: 'queue_full',
  SPOTGATE_UNAVAILABLE: 'unavailable'
}

/** The outcome label of a request that ended in an error. */
export function outcomeOfError (error: FastifyError, status: number): Outcome {
  return OUTCOME_OF_ERROR[error.code] ?? (status >= 500 ? (status === 503 ? 'unavailable' : 'failed') : 'invalid')
}

/** Counts every inference request once, when its reply has gone, whatever route or error it took. */
export function installRequestMetrics (app: FastifyInstance, metrics: Metrics): void {
  app.decorateRequest('servedModel', null)
  app.decorateRequest('outcome', null)
  app.addHook('onResponse', async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.routeOptions.config?.inference !== true) return
    // Refused before the route ran (a body too large, a bad content type): the client's fault.
    const outcome = request.outcome ?? (reply.statusCode >= 500 ? 'unavailable' : 'invalid')
    const model = request.servedModel
    if (model === null) {
      // Unknown models are counted without labels, so a client cannot create series at will.
      metrics.requests.child('', '', outcome).inc()
      return
    }
    model.metrics.requests(outcome).inc()
    if (reply.statusCode === 200) model.metrics.requestDuration.observe(reply.elapsedTime / 1000)
  })
}
