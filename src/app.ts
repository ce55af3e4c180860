import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from './config.js'
import { answerClientError } from './http/client-error.js'
import { answerFrameworkError, installErrorHandling } from './http/error-handler.js'
import { requestIdOf } from './http/idempotency-key.js'
import { installReplyHeaders } from './http/reply-headers.js'
import { installRequestMetrics } from './http/request-metrics.js'
import { adminRoutes } from './http/routes/admin.js'
import { healthRoutes } from './http/routes/health.js'
import { inferRoutes } from './http/routes/infer.js'
import { metricsRoute } from './http/routes/metrics.js'
import { modelRoutes } from './http/routes/models.js'
import { repositoryRoutes } from './http/routes/repository.js'
import { v2Responses } from './http/v2-encoder.js'
import { installBodyParsers } from './http/body-parsers.js'
import { AJV_OPTIONS, schemaRefusal } from './http/schemas.js'
import { registerUnderPressure } from './http/plugins/under-pressure.js'
import { requireApiToken } from './http/plugins/api-token.js'
import { batchRoutes } from './http/routes/batches.js'
import { fileRoutes } from './http/routes/files.js'
import type { BatchStorage } from './batch/storage/storage.js'
import type { BatchStore } from './batch/store.js'
import { InferenceService } from './inference-service.js'
import type { ModelRegistry } from './inference/model-registry.js'
import type { Journal } from './journal/journal.js'
import type { AdminSource } from './lifecycle/notices/admin.js'
import type { ServerState } from './lifecycle/server-state.js'
import type { Metrics } from './metrics.js'
import { PACKAGE_VERSION } from './version.js'
import { Unavailable } from './errors.js'

export interface AppDeps {
  readonly models: ModelRegistry
  readonly metrics: Metrics
  readonly state: ServerState
  readonly log: Logger
  readonly journal: Journal
  /** Receives POST /admin/drain; the route exists only when ADMIN_TOKEN is set. */
  readonly admin?: AdminSource
  /** The Files and Batches API (docs/batches.md). */
  readonly batches?: BatchApiDeps
}

export interface BatchApiDeps {
  readonly store: BatchStore
  readonly storage: BatchStorage
  /** Tells this instance's batch worker there is work now. */
  readonly poke: () => void
}

export interface App {
  readonly app: FastifyInstance
  readonly service: InferenceService
}

/** The HTTP side of an instance: Fastify, the admission gate, plugins and routes. createInstance (instance.ts) is its one caller, for main.ts and the tests alike. */
export async function buildApp (config: Config, deps: AppDeps): Promise<App> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: config.maxBodyBytes,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    forceCloseConnections: 'idle',
    // The drain refuses new inference itself (the gate below) and keeps health and metrics up.
    return503OnClosing: false,
    // The client's Idempotency-Key is the request's id in logs, headers and the journal alike.
    genReqId: requestIdOf,
    // Per-request access logs cost more than an inference at these rates; errors are logged where they happen.
    logController: new LogController({ requestIdLogLabel: 'requestId', disableRequestLogging: true }),
    routerOptions: { maxParamLength: 300 },
    frameworkErrors: answerFrameworkError,
    clientErrorHandler: answerClientError,
    // Query strings and path parameters are JSON schemas (http/schemas.ts); their refusals keep the routes' messages.
    ajv: AJV_OPTIONS,
    schemaErrorFormatter: schemaRefusal
  })
  installBodyParsers(app)
  const { state } = deps
  // The one gate: whether this instance takes inference now. The refusal is answered
  // by the error handler, before the body is read.
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.config?.inference !== true) return
    const refusal = state.refusal()
    if (refusal !== undefined) throw new Unavailable(refusal)
  })
  installReplyHeaders(app, state)
  deps.state.addReadinessCheck(() => deps.journal.unavailableReason())
  deps.state.addReadinessCheck(() => deps.models.unavailableReason())
  if (config.apiToken !== undefined) requireApiToken(app, config.apiToken)
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
  await app.register(repositoryRoutes, { models: deps.models })
  await app.register(inferRoutes, { models: deps.models, service, maxPollWaitMs: config.maxPollWaitMs })
  if (deps.batches !== undefined) {
    const { store, storage, poke } = deps.batches
    await app.register(fileRoutes, { store, storage, settings: config.batch })
    await app.register(batchRoutes, { store, poke })
  }
  if (config.adminToken !== undefined && deps.admin !== undefined) {
    await app.register(adminRoutes, { token: config.adminToken, admin: deps.admin, state: deps.state })
  }
  return { app, service }
}
