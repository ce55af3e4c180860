import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from './config.js'
import { answerFrameworkError, installErrorHandling } from './http/error-handler.js'
import { validKeyOrUndefined } from './http/idempotency-key.js'
import { installRequestMetrics } from './http/request-labels.js'
import { adminRoutes } from './http/routes/admin.js'
import { healthRoutes } from './http/routes/health.js'
import { inferRoutes } from './http/routes/infer.js'
import { metricsRoute } from './http/routes/metrics.js'
import { modelRoutes } from './http/routes/models.js'
import { v2Responses } from './http/stored-response.js'
import { installBodyParsers } from './http/body-parsers.js'
import { registerUnderPressure } from './http/plugins/under-pressure.js'
import { InferenceService } from './inference-service.js'
import type { ModelRegistry } from './inference/model-registry.js'
import type { Journal } from './journal/journal.js'
import type { AdminSource } from './lifecycle/notices/admin.js'
import type { ServerState } from './lifecycle/server-state.js'
import type { Metrics } from './metrics.js'
import { PACKAGE_VERSION } from './version.js'
import { RETRY_AFTER_SECONDS } from './errors.js'

export interface AppDeps {
  readonly models: ModelRegistry
  readonly metrics: Metrics
  readonly state: ServerState
  readonly log: Logger
  readonly journal: Journal
  /** Receives POST /admin/drain; the route exists only when ADMIN_TOKEN is set. */
  readonly admin?: AdminSource
}

export interface App {
  readonly app: FastifyInstance
  readonly service: InferenceService
}

/** Wires plugins and routes; `main.ts` and the tests both build the server through this. */
export async function buildApp (config: Config, deps: AppDeps): Promise<FastifyInstance> {
  return (await buildServer(config, deps)).app
}

/** The app and the service behind it, for the process entry that drains both. */
export async function buildServer (config: Config, deps: AppDeps): Promise<App> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: config.maxBodyBytes,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    forceCloseConnections: 'idle',
    // The drain answers new requests itself (503 with Retry-After) and keeps health and metrics up.
    return503OnClosing: false,
    // The client's Idempotency-Key is the request's id in logs, headers and the journal alike.
    genReqId: (request) => validKeyOrUndefined(request.headers['idempotency-key']) ?? randomUUID(),
    // Per-request access logs cost more than an inference at these rates; errors are logged where they happen.
    logController: new LogController({ requestIdLogLabel: 'requestId', disableRequestLogging: true }),
    routerOptions: { maxParamLength: 300 },
    frameworkErrors: answerFrameworkError
  })
  installBodyParsers(app)
  const { state } = deps
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
    if (state.draining) reply.header('connection', 'close')
    if (!state.acceptingRequests && request.routeOptions.config?.inference === true) {
      return reply.code(503).header('retry-after', String(RETRY_AFTER_SECONDS)).send({ error: 'draining: this instance takes no new requests' })
    }
  })
  deps.state.addReadinessCheck(() => deps.journal.unavailableReason())
  deps.state.addReadinessCheck(() => deps.models.unavailableReason())
  installErrorHandling(app, config)
  await registerUnderPressure(app, config.pressure, deps.state)
  installRequestMetrics(app, deps.metrics)

  const service = new InferenceService({
    journal: deps.journal,
    metrics: deps.metrics,
    log: deps.log,
    instanceId: config.instanceId,
    idempotencyWaitMs: config.idempotencyWaitMs,
    models: deps.models,
    replayEncoder: v2Responses
  })
  await app.register(healthRoutes, { state: deps.state, version: PACKAGE_VERSION })
  await app.register(metricsRoute, { metrics: deps.metrics })
  await app.register(modelRoutes, { models: deps.models })
  await app.register(inferRoutes, { models: deps.models, service, state: deps.state, maxPollWaitMs: config.maxPollWaitMs })
  if (config.adminToken !== undefined && deps.admin !== undefined) {
    await app.register(adminRoutes, { token: config.adminToken, admin: deps.admin, state: deps.state })
  }
  return { app, service }
}
