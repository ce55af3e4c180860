import type { FastifyInstance } from 'fastify'
import type { Metrics } from '../../metrics.js'

export async function metricsRoute (app: FastifyInstance, { metrics }: { metrics: Metrics }): Promise<void> {
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType)
    return metrics.registry.metrics()
  })
}
