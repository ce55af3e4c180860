import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { InvalidRequest, RequestNotFound } from '../../errors.js'
import type { InferenceService, SubmissionOutcome } from '../../inference-service.js'
import type { ModelRegistry } from '../../inference/model-registry.js'
import { rejectRefusedKey, unquotedKey } from '../idempotency-key.js'
import { outcomeOf } from '../request-metrics.js'
import { pollSchema } from '../schemas.js'
import { v2Responses } from '../v2-encoder.js'
import { BinaryBody } from '../v2-binary.js'
import { decodeRequestBody } from '../v2-json.js'
import { isJsonObject } from '../../json.js'

export interface InferRouteDeps {
  readonly models: ModelRegistry
  readonly service: InferenceService
  readonly maxPollWaitMs: number
}

interface ModelParams { model: string, version?: string }

function versionFromBody (value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value === 'number' && Number.isInteger(value)) return String(value)
  if (typeof value === 'string') return value
  throw new InvalidRequest('version must be a string or an integer')
}

function prefersAsync (header: string | string[] | undefined): boolean {
  const values = Array.isArray(header) ? header : header === undefined ? [] : [header]
  return values.some((value) => value.split(',').some((token) => token.trim().toLowerCase() === 'respond-async'))
}

function location (id: string): string {
  return `/infer/${encodeURIComponent(id)}`
}

/**
 * Turns a service outcome into the HTTP reply the README's HTTP API describes
 * (`X-Request-Id` and `Retry-After` are added by reply-headers.ts).
 */
function sendOutcome (reply: FastifyReply, id: string, outcome: SubmissionOutcome, accepted = false): FastifyReply {
  if (outcome.kind === 'answered') {
    if (outcome.replayed) reply.header('idempotent-replayed', 'true')
    if (outcome.response.headerLength !== undefined) reply.header('inference-header-content-length', String(outcome.response.headerLength))
    return reply.code(outcome.response.statusCode).type(outcome.response.contentType).send(outcome.response.body)
  }
  if (outcome.kind === 'handed_off') {
    return reply.code(503).header('location', location(id))
      .send({ error: 'this instance is shutting down; the request was handed to another instance', id, status: 'handed_off' })
  }
  if (accepted) reply.header('preference-applied', 'respond-async')
  return reply.code(202).header('location', location(id)).send({ id, status: outcome.state })
}

export async function inferRoutes (app: FastifyInstance, deps: InferRouteDeps): Promise<void> {
  const { models, service } = deps

  async function infer (request: FastifyRequest, reply: FastifyReply, name: string, version: string | undefined, body: unknown) {
    // The request's id is its Idempotency-Key when it has a valid one (app.ts, genReqId).
    rejectRefusedKey(request)
    const id = request.id
    const model = models.resolve(name, version)
    request.servedModel = model
    const decoded = body instanceof BinaryBody
      ? decodeRequestBody(body.header, model.signature, model.limits, body.data)
      : decodeRequestBody(body, model.signature, model.limits)
    const inferenceRequest = { model: model.name, version: model.version, ...decoded }
    const respondAsync = prefersAsync(request.headers.prefer)
    const outcome = await service.submit({
      id,
      model,
      request: inferenceRequest,
      ...(version !== undefined && { requestedVersion: version }),
      respondAsync,
      encoder: v2Responses
    })
    request.outcome = outcomeOf(outcome, respondAsync)
    return sendOutcome(reply, id, outcome, respondAsync && outcome.kind === 'pending')
  }

  const config = { inference: true }

  app.post('/infer', { config }, async (request, reply) => {
    const body = request.body instanceof BinaryBody ? request.body.header : request.body
    if (!isJsonObject(body)) throw new InvalidRequest('request body must be a JSON object')
    if (typeof body.model !== 'string' || body.model === '') throw new InvalidRequest('model must be a non-empty string naming the model')
    return infer(request, reply, body.model, versionFromBody(body.version), request.body)
  })

  app.post<{ Params: ModelParams }>('/v2/models/:model/infer', { config }, async (request, reply) =>
    infer(request, reply, request.params.model, undefined, request.body))

  app.post<{ Params: ModelParams }>('/v2/models/:model/versions/:version/infer', { config }, async (request, reply) =>
    infer(request, reply, request.params.model, request.params.version, request.body))

  app.get<{ Params: { id: string }, Querystring: { wait?: string } }>('/infer/:id', { schema: pollSchema }, async (request, reply) => {
    const id = unquotedKey(request.params.id) as string
    const rawWait = request.query.wait
    const waitMs = rawWait === undefined ? 0 : Math.min(Number(rawWait), deps.maxPollWaitMs)
    const outcome = await service.status(id, waitMs)
    request.subjectId = id
    if (outcome === undefined) throw new RequestNotFound(`no request '${id}' (unknown or expired)`)
    return sendOutcome(reply, id, outcome)
  })
}
