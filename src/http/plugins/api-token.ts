import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'

function digest (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/**
 * The data routes of the README's `API_TOKEN` setting: inference (`/infer…`,
 * `/v2/models/{m}…/infer`) and `/v1/…`. Judged by the route the router matched, never
 * by the URL's text: `/%761/files` or an absolute-form `http://host/v1/files` reach the
 * same handler as `/v1/files`. A URL that matches no route is judged by its path, so
 * an unknown data path is a 401 before it is a 404.
 */
function isDataRoute (request: FastifyRequest): boolean {
  const path = request.routeOptions.url ?? request.url.split('?')[0]
  return path === '/v1' || path.startsWith('/v1/') || path === '/infer' || path.startsWith('/infer/') ||
    (path.startsWith('/v2/models/') && path.endsWith('/infer'))
}

/**
 * API_TOKEN: every data route needs `Authorization: Bearer <token>` (what the openai
 * client sends); health, metadata and /metrics stay open for load balancers and scrapers.
 * The token is compared as a digest, in constant time whatever its length, and never logged.
 */
export function requireApiToken (app: FastifyInstance, token: string): void {
  const expected = digest(`Bearer ${token}`)
  app.addHook('onRequest', async (request, reply) => {
    if (!isDataRoute(request)) return
    if (!timingSafeEqual(digest(request.headers.authorization ?? ''), expected)) {
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'missing or wrong bearer token (API_TOKEN)' })
    }
  })
}
