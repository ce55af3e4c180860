import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { buildApp } from './app.js'
import { BatchWorker } from './batch/batch-worker.js'
import { MemoryBatchStore } from './batch/memory-batch-store.js'
import { RedisBatchStore } from './batch/redis/redis-batch-store.js'
import { createStorage } from './batch/storage/create-storage.js'
import type { BatchStore } from './batch/store.js'
import type { Config } from './config.js'
import type { InferenceService } from './inference-service.js'
import { ModelRegistry } from './inference/model-registry.js'
import { scanModelRepository } from './inference/model-repository.js'
import { ConfigError, EX_CONFIG } from './config-error.js'
import { createJournal } from './journal/create-journal.js'
import type { Journal } from './journal/journal.js'
import { LeaseKeeper } from './journal/lease-keeper.js'
import { ReplayConsumer } from './journal/replay-consumer.js'
import { Drain } from './lifecycle/drain.js'
import { AdminSource } from './lifecycle/notices/admin.js'
import { createCloudSources } from './lifecycle/notices/create-cloud-sources.js'
import type { NoticeSource } from './lifecycle/notices/notice.js'
import { SignalSource } from './lifecycle/notices/signals.js'
import { ServerState } from './lifecycle/server-state.js'
import { createLogger } from './logger.js'
import { createMetrics, type Metrics } from './metrics.js'

export interface InstanceOptions {
  /** Where notices come from besides `POST /admin/drain`; default: SIGTERM, SIGINT and the configured clouds. */
  readonly noticeSources?: readonly NoticeSource[]
  /** Wraps the journal the inference service writes to (tests hold a call in flight with it). */
  readonly wrapJournal?: (journal: Journal) => Journal
  /** Called when a drain has finished; default: `process.exit`. */
  readonly exit?: (code: number) => void
  /**
   * Called when the instance cannot run at all (Redis holds a journal namespace it cannot
   * read); default: the message on stderr and exit code 78.
   */
  readonly fatal?: (error: ConfigError) => void
}

/** What keeps a Redis-backed instance part of a fleet: its lease and its share of the replay work. */
interface FleetDuties {
  readonly leases: LeaseKeeper
  readonly replayer: ReplayConsumer
}

export interface Instance {
  readonly config: Config
  readonly log: Logger
  readonly metrics: Metrics
  readonly state: ServerState
  readonly models: ModelRegistry
  readonly journal: Journal
  readonly app: FastifyInstance
  readonly service: InferenceService
  readonly drain: Drain
  readonly batchWorker: BatchWorker
  /** Starts every notice source, so a signal from now on drains instead of killing the process. */
  watchNotices: () => void
  /**
   * Watches for notices (if not yet), keeps the lease, loads and warms every model, then reports
   * ready and starts replaying the fleet's handed-off work. Tests may leave out the
   * lease or the replay (`false`).
   */
  start: (options?: { leases?: boolean, replay?: boolean }) => Promise<void>
  /** Starts consuming the fleet's replay stream (a no-op without Redis). */
  startReplay: () => void
  /** Stops everything without a drain or an exit: for tests and embedding. */
  close: () => Promise<void>
}

/**
 * The composition root: one spotgate instance from its configuration. `main.ts`
 * adds only the process concerns (listen, exit codes); tests build the same thing.
 */
export async function createInstance (config: Config, options: InstanceOptions = {}): Promise<Instance> {
  const log = createLogger(config)
  const metrics = createMetrics()
  const state = new ServerState(metrics)
  const entries = await scanModelRepository(config.modelRepository, config.modelDefaults)
  const models = new ModelRegistry(entries, log, metrics, { loadFailure: config.modelLoadFailure, isolation: config.modelIsolation })
  const fatal = options.fatal ?? ((error: ConfigError) => {
    log.fatal({ err: error }, 'cannot use the journal')
    process.stderr.write(`spotgate: ${error.message}\n`)
    process.exit(EX_CONFIG)
  })
  const backend = createJournal(config, { metrics, log, incompatible: (message) => fatal(new ConfigError(message)) })
  const journal = backend.journal
  const admin = new AdminSource()
  const serviceJournal = options.wrapJournal?.(journal) ?? journal
  const storage = await createStorage(config.batch.storageUrl, config.batch.s3Endpoint, (message) => log.warn(message))
  const batchStore: BatchStore = backend.connection !== undefined
    ? new RedisBatchStore(backend.connection, { namespace: config.journalNamespace, retentionMs: config.batch.retentionSeconds * 1000 })
    : new MemoryBatchStore(config.instanceId)
  const batchWorker = new BatchWorker({
    store: batchStore,
    storage,
    models,
    settings: config.batch,
    claimIdleMs: config.leaseTtlMs,
    canTakeWork: () => state.phase === 'ready',
    log,
    metrics
  })
  const { app, service } = await buildApp(config, {
    models,
    metrics,
    state,
    log,
    journal: serviceJournal,
    admin,
    batches: { store: batchStore, storage, poke: () => batchWorker.poke() }
  })

  const store = backend.fleet
  const handOff = (id: string, reason: string): Promise<void> => journal.handOff({ id, reason })
  const fleet: FleetDuties | undefined = store !== undefined
    ? {
        leases: new LeaseKeeper(store, {
          leaseTtlMs: config.leaseTtlMs,
          orphanAfterMs: Math.max(5000, 4 * config.redisCommandTimeoutMs),
          isLocallyActive: (id) => service.isActive(id),
          handOff,
          log,
          metrics
        }),
        replayer: new ReplayConsumer({
          store,
          concurrency: config.replayConcurrency,
          maxAttempts: config.replayMaxAttempts,
          claimIdleMs: config.leaseTtlMs,
          canTakeWork: () => state.phase === 'ready',
          execute: (job) => service.replay(job),
          handOff,
          giveUp: (id, fingerprint, attempts, lastError) => service.giveUp(id, fingerprint, attempts, lastError),
          log,
          metrics
        })
      }
    : undefined

  const sources = options.noticeSources ?? [new SignalSource('SIGTERM'), new SignalSource('SIGINT'), ...createCloudSources(config, { log, metrics })]
  const drain = new Drain({
    settings: config,
    state,
    service,
    journal,
    sources: [admin, ...sources],
    batches: batchWorker,
    log,
    metrics,
    closeListener: () => app.close(),
    shutdown: async () => {
      await batchWorker.stop()
      await fleet?.replayer.stop()
      await fleet?.leases.release()
      await backend.close()
      await models.close()
      await storage.close()
    },
    exit: options.exit ?? ((code) => process.exit(code))
  })

  let watching = false
  const watchNotices = (): void => {
    if (watching) return
    watching = true
    drain.watch()
  }
  let replaying = false
  const startReplay = (): void => {
    if (replaying || fleet === undefined) return
    replaying = true
    fleet.replayer.start()
  }

  return {
    config,
    log,
    metrics,
    state,
    models,
    journal,
    app,
    service,
    drain,
    batchWorker,
    startReplay,
    watchNotices,
    async start ({ leases = true, replay = true } = {}) {
      watchNotices()
      if (leases) fleet?.leases.start()
      await models.load()
      if (state.phase !== 'starting') return
      state.enter('ready')
      if (replay) startReplay()
      batchWorker.start()
      log.info({ models: models.all().map((m) => `${m.name}/${m.version}`), journal: journal.kind }, 'ready')
    },
    async close () {
      await batchWorker.stop()
      await fleet?.replayer.stop()
      fleet?.leases.stop()
      await app.close()
      await models.close()
      await backend.close()
      await storage.close()
    }
  }
}
