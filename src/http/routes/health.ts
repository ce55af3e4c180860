import type { FastifyInstance } from 'fastify'
import type { ServerState } from '../../lifecycle/server-state.js'

const SERVER_NAME = 'spotgate'

/** Liveness, readiness (what load balancers probe) and the v2 server metadata. */
export async function healthRoutes (app: FastifyInstance, deps: { state: ServerState, version: string }): Promise<void> {
  const { state } = deps
  const live = async () => ({ live: true, phase: state.phase })
  app.get('/health/live', live)
  app.get('/v2/health/live', live)

  const ready = async (_request: unknown, reply: import('fastify').FastifyReply) => {
    const reasons = state.unreadyReasons()
    if (reasons.length === 0) return { ready: true }
    return reply.code(503).send({ ready: false, reasons })
  }
  app.get('/health/ready', ready)
  app.get('/v2/health/ready', ready)

  app.get('/v2', async () => ({ name: SERVER_NAME, version: deps.version, extensions: ['binary_tensor_data'] }))
}
