import underPressure from '@fastify/under-pressure'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Unavailable } from '../../errors.js'
import type { PressureLimits } from '../../config.js'
import type { ServerState } from '../../lifecycle/server-state.js'

/**
 * Refuses inference early (503 + Retry-After) when the event loop or memory is
 * saturated, and fails readiness meanwhile so the load balancer steers away.
 * Health, metrics and admin routes keep answering: they are how operators see it.
 */
export async function registerUnderPressure (app: FastifyInstance, limits: PressureLimits, state: ServerState): Promise<void> {
  await app.register(underPressure, {
    maxEventLoopDelay: limits.maxEventLoopDelayMs,
    maxHeapUsedBytes: limits.maxHeapUsedBytes,
    maxRssBytes: limits.maxRssBytes,
    // A returned value is sent as the reply (an error: through the error handler); undefined lets the request through.
    pressureHandler: ((request: FastifyRequest, _reply: FastifyReply, type: string, value: number | undefined) => {
      if (request.routeOptions.config?.inference !== true) return undefined
      return new Unavailable(`overloaded (${type}${value === undefined ? '' : ` ${Math.round(value)}`}); retry later`)
    }) as never
  })
  state.addReadinessCheck(() => (app.isUnderPressure() ? 'under pressure (event loop delay or memory above its limit)' : undefined))
}
