import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { AdminSource } from '../../lifecycle/notices/admin.js'
import type { ServerState } from '../../lifecycle/server-state.js'
import { drainSchema } from '../schemas.js'

function digest (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/** `/admin/*`, registered only when ADMIN_TOKEN is set (absent routes answer 404). */
export async function adminRoutes (app: FastifyInstance, deps: { token: string, admin: AdminSource, state: ServerState }): Promise<void> {
  const expected = digest(`Bearer ${deps.token}`)

  app.addHook('onRequest', async (request, reply) => {
    const given = request.headers.authorization ?? ''
    // Comparing digests keeps the comparison constant-time whatever the lengths.
    if (!timingSafeEqual(digest(given), expected)) {
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'missing or wrong bearer token' })
    }
  })

  app.post<{ Querystring: { deadline_ms?: string } }>('/admin/drain', { schema: drainSchema }, async (request, reply) => {
    const raw = request.query.deadline_ms
    deps.admin.trigger(raw === undefined ? undefined : Number(raw))
    return reply.code(202).send({ draining: true, phase: deps.state.phase })
  })
}
