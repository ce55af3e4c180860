import type { FastifyInstance, FastifyRequest } from 'fastify'
import { InvalidRequest, Unavailable } from '../../errors.js'
import type { InferenceService } from '../../inference-service.js'
import type { ModelRegistry } from '../../inference/model-registry.js'
import type { ServerState } from '../../lifecycle/server-state.js'
import { decodeRequestBody, encodeResponseBody } from '../v2-json.js'

export interface InferRouteDeps {
  readonly models: ModelRegistry
  readonly service: InferenceService
  readonly state: ServerState
}

interface ModelParams { model: string, version?: string }

function versionFromBody (value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value === 'number' && Number.isInteger(value)) return String(value)
  if (typeof value === 'string') return value
  throw new InvalidRequest('version must be a string or an integer')
}

export async function inferRoutes (app: FastifyInstance, deps: InferRouteDeps): Promise<void> {
  const { models, service, state } = deps

  async function infer (request: FastifyRequest, name: string, version: string | undefined, body: unknown) {
    if (state.phase !== 'ready' && state.phase !== 'draining') throw new Unavailable(`not ready: ${state.unreadyReasons().join(', ')}`)
    const model = models.resolve(name, version)
    request.modelLabels = { model: model.name, version: model.version }
    const decoded = decodeRequestBody(body, model.signature, model.limits)
    return encodeResponseBody(await service.infer(model, decoded))
  }

  const config = { inference: true }

  app.post('/infer', { config }, async (request) => {
    const body = request.body as Record<string, unknown> | null
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new InvalidRequest('request body must be a JSON object')
    if (typeof body.model !== 'string' || body.model === '') throw new InvalidRequest('model must be a non-empty string naming the model')
    return infer(request, body.model, versionFromBody(body.version), body)
  })

  app.post<{ Params: ModelParams }>('/v2/models/:model/infer', { config }, async (request) =>
    infer(request, request.params.model, undefined, request.body))

  app.post<{ Params: ModelParams }>('/v2/models/:model/versions/:version/infer', { config }, async (request) =>
    infer(request, request.params.model, request.params.version, request.body))
}
