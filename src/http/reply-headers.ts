import type { FastifyInstance } from 'fastify'
import { RETRY_AFTER_SECONDS } from '../errors.js'
import type { ServerState } from '../lifecycle/server-state.js'

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The id `X-Request-Id` names when a reply is about another request than this one
     * (`GET /infer/{id}` answers for the polled request); null: this request's own id.
     */
    subjectId: string | null
  }
}

const RETRY_AFTER = String(RETRY_AFTER_SECONDS)

/**
 * The headers of the README's "Request identity and retries", set on every reply
 * whichever route, hook or error handler answered it, so no route sets them itself:
 * `X-Request-Id`; `Retry-After` on 429 and 503, and on a 202 that points the client
 * at `Location` to poll; `Connection: close` while draining, so the listener's close
 * waits for no idle keep-alive socket (also for requests that arrived before the notice).
 */
export function installReplyHeaders (app: FastifyInstance, state: ServerState): void {
  app.decorateRequest('subjectId', null)
  app.addHook('onSend', async (request, reply, payload) => {
    reply.header('x-request-id', request.subjectId ?? request.id)
    const status = reply.statusCode
    if (status === 503 || status === 429 || (status === 202 && reply.hasHeader('location'))) reply.header('retry-after', RETRY_AFTER)
    if (state.draining) reply.header('connection', 'close')
    return payload
  })
}
