import type { FastifyInstance } from 'fastify'
import { InvalidRequest } from '../../errors.js'
import type { ModelRegistry } from '../../inference/model-registry.js'
import { isJsonObject } from '../../json.js'

/**
 * Triton's model repository index: every model version with its state (READY, or
 * UNAVAILABLE with the reason it did not load). The body is optional; `{"ready": true}`
 * keeps only the versions that serve.
 */
export async function repositoryRoutes (app: FastifyInstance, { models }: { models: ModelRegistry }): Promise<void> {
  app.post('/v2/repository/index', { config: { emptyBodyAllowed: true } }, async (request) => {
    const body: unknown = request.body
    if (body !== undefined && body !== null && !isJsonObject(body)) {
      throw new InvalidRequest('the repository index request body must be a JSON object, e.g. {"ready": true}')
    }
    const ready = (body as { ready?: unknown } | null | undefined)?.ready
    if (ready !== undefined && typeof ready !== 'boolean') throw new InvalidRequest('ready must be true or false')
    const index = models.index()
    return ready === true ? index.filter((entry) => entry.state === 'READY') : index
  })
}
