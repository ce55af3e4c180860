import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { truncate } from '../text.js'
import { outcomeOfError } from './request-metrics.js'

/** Fastify's own messages for these say less than a client needs to fix the request. */
function clearerFrameworkMessage (error: FastifyError, contentType: string | undefined, maxBodyBytes: number): string | undefined {
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return `content type ${contentType === undefined ? '(none)' : JSON.stringify(contentType.slice(0, 100))} is not supported; send application/json, or a binary request with Inference-Header-Content-Length`
  }
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return `request body exceeds the limit of ${maxBodyBytes} bytes (MAX_BODY_BYTES)`
  return undefined
}

/**
 * One place that turns errors into `{"error": "..."}` replies. Client errors keep
 * their message (it names what is wrong); unexpected server errors are logged and
 * answered without internals.
 */
export function installErrorHandling (app: FastifyInstance, { maxBodyBytes }: { maxBodyBytes: number }): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
    const ours = typeof error.code === 'string' && (error.code.startsWith('SPOTGATE_') || error.code.startsWith('FST_'))
    // 503s come in floods during an outage or a drain, and each one is already counted in the metrics.
    request.outcome = outcomeOfError(error, status)
    const model = request.servedModel
    if (status >= 500 && status !== 503) request.log.error({ err: error, ...(model !== null && { model: model.name, version: model.version }) }, 'request failed')
    const message = clearerFrameworkMessage(error, request.headers['content-type'], maxBodyBytes) ?? (ours || status < 500 ? error.message : 'internal server error')
    return reply.code(status).send({ error: message })
  })
  app.setNotFoundHandler((request, reply) => {
    return reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0].slice(0, 200)}` })
  })
}

/**
 * Fastify answers URLs its router cannot take (bad percent-encoding, a path segment
 * longer than `maxParamLength`) before any hook or error handler runs, in a shape of
 * its own that echoes the whole URL. Passed as Fastify's `frameworkErrors` option,
 * this answers them like every other error. A segment that long cannot name a
 * model or version (names have at most 128 characters), so it is a 404.
 */
export function answerFrameworkError (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  // No hook runs for these replies, reply-headers.ts's neither; they are 400 or 404, so the id is all it would add.
  reply.header('x-request-id', request.id)
  const path = truncate(request.url.split('?')[0], 200)
  if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') return reply.code(404).send({ error: `no route ${request.method} ${path}: a path segment is too long` })
  if (error.code === 'FST_ERR_BAD_URL') return reply.code(400).send({ error: `the URL ${path} is not valid percent-encoding` })
  return reply.code(400).send({ error: error.message })
}
