import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { InvalidRequest, RequestNotFound, RETRY_AFTER_SECONDS, Unavailable } from '../../errors.js'
import type { InferenceService, SubmissionOutcome } from '../../inference-service.js'
import type { ModelRegistry } from '../../inference/model-registry.js'
import { fingerprint } from '../../journal/request-record.js'
import type { ServerState } from '../../lifecycle/server-state.js'
import { idempotencyKey } from '../idempotency-key.js'
import { v2Responses } from '../stored-response.js'
import { BinaryBody } from '../v2-binary.js'
import { decodeRequestBody } from '../v2-json.js'

export interface InferRouteDeps {
  readonly models: ModelRegistry
  readonly service: InferenceService
  readonly state: ServerState
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

/** Turns a service outcome into the HTTP reply of design.md §3. */
function sendOutcome (reply: FastifyReply, id: string, outcome: SubmissionOutcome, accepted = false): FastifyReply {
  reply.header('x-request-id', id)
  if (outcome.kind === 'answered') {
    if (outcome.replayed) reply.header('idempotent-replayed', 'true')
    if (outcome.response.headerLength !== undefined) reply.header('inference-header-content-length', String(outcome.response.headerLength))
    return reply.code(outcome.response.statusCode).type(outcome.response.contentType).send(outcome.response.body)
  }
  if (outcome.kind === 'handed_off') {
    return reply.code(503).header('location', location(id)).header('retry-after', String(RETRY_AFTER_SECONDS))
      .send({ error: 'this instance is shutting down; the request was handed to another instance', id, status: 'handed_off' })
  }
  if (accepted) reply.header('preference-applied', 'respond-async')
  return reply.code(202).header('location', location(id)).header('retry-after', String(RETRY_AFTER_SECONDS)).send({ id, status: outcome.state })
}

export async function inferRoutes (app: FastifyInstance, deps: InferRouteDeps): Promise<void> {
  const { models, service, state } = deps

  async function infer (request: FastifyRequest, reply: FastifyReply, name: string, version: string | undefined, body: unknown) {
    const id = idempotencyKey(request.headers['idempotency-key']) ?? request.id
    reply.header('x-request-id', id)
    if (state.phase !== 'ready' && state.phase !== 'draining') throw new Unavailable(`not ready: ${state.unreadyReasons().join(', ')}`)
    const model = models.resolve(name, version)
    request.modelLabels = { model: model.name, version: model.version }
    const decoded = body instanceof BinaryBody
      ? decodeRequestBody(body.header, model.signature, model.limits, body.data)
      : decodeRequestBody(body, model.signature, model.limits)
    const inferenceRequest = { model: model.name, version: model.version, ...decoded }
    const respondAsync = prefersAsync(request.headers.prefer)
    const outcome = await service.submit({
      id,
      model,
      request: inferenceRequest,
      fingerprint: fingerprint(inferenceRequest, version),
      respondAsync,
      encoder: v2Responses
    })
    return sendOutcome(reply, id, outcome, respondAsync && outcome.kind === 'pending')
  }

  const config = { inference: true }

  app.post('/infer', { config }, async (request, reply) => {
    const body = (request.body instanceof BinaryBody ? request.body.header : request.body) as Record<string, unknown> | null
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new InvalidRequest('request body must be a JSON object')
    if (typeof body.model !== 'string' || body.model === '') throw new InvalidRequest('model must be a non-empty string naming the model')
    return infer(request, reply, body.model, versionFromBody(body.version), request.body)
  })

  app.post<{ Params: ModelParams }>('/v2/models/:model/infer', { config }, async (request, reply) =>
    infer(request, reply, request.params.model, undefined, request.body))

  app.post<{ Params: ModelParams }>('/v2/models/:model/versions/:version/infer', { config }, async (request, reply) =>
    infer(request, reply, request.params.model, request.params.version, request.body))

  app.get<{ Params: { id: string }, Querystring: { wait?: string } }>('/infer/:id', async (request, reply) => {
    const id = idempotencyKey(request.params.id) as string
    const rawWait = request.query.wait
    let waitMs = 0
    if (rawWait !== undefined) {
      if (!/^\d{1,9}$/.test(rawWait)) throw new InvalidRequest('wait must be a whole number of milliseconds')
      waitMs = Math.min(Number(rawWait), deps.maxPollWaitMs)
    }
    const outcome = await service.status(id, waitMs)
    reply.header('x-request-id', id)
    if (outcome === undefined) throw new RequestNotFound(`no request '${id}' (unknown or expired)`)
    return sendOutcome(reply, id, outcome)
  })
}
