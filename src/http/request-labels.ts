import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Metrics, Outcome } from '../metrics.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set once the route knows which model version a request is for; labels its metrics. */
    modelLabels: { model: string, version: string } | null
  }
}

function outcomeOf (reply: FastifyReply): Outcome {
  const status = reply.statusCode
  if (status === 200) return reply.getHeader('idempotent-replayed') === 'true' ? 'replayed' : 'ok'
  if (status === 202) return reply.getHeader('preference-applied') !== undefined ? 'accepted_async' : 'pending'
  if (status === 404) return 'not_found'
  if (status === 422) return 'conflict'
  if (status === 429) return 'queue_full'
  if (status === 503) return reply.getHeader('location') !== undefined ? 'handed_off' : 'unavailable'
  if (status >= 500) return 'failed'
  return 'invalid'
}

/** Counts every inference request once, when its reply has gone, whatever route or error it took. */
export function installRequestMetrics (app: FastifyInstance, metrics: Metrics): void {
  app.decorateRequest('modelLabels', null)
  app.addHook('onResponse', async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.routeOptions.config?.inference !== true) return
    const labels = request.modelLabels ?? { model: '', version: '' }
    metrics.requests.inc({ ...labels, outcome: outcomeOf(reply) })
    if (reply.statusCode === 200) metrics.requestDuration.observe(labels, reply.elapsedTime / 1000)
  })
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Marks routes whose requests count in spotgate_requests_total. */
    inference?: boolean
  }
}
