#!/usr/bin/env node
import { buildServer } from './app.js'
import { loadConfig } from './config.js'
import { ConfigError, EX_CONFIG } from './config-error.js'
import { ModelRegistry } from './inference/model-registry.js'
import { scanModelRepository } from './inference/model-repository.js'
import { createJournal } from './journal/create-journal.js'
import { LeaseKeeper } from './journal/lease-keeper.js'
import { RedisJournal } from './journal/redis-journal.js'
import { ReplayWorker } from './journal/replay-worker.js'
import { Drain } from './lifecycle/drain.js'
import { AdminSource } from './lifecycle/notices/admin.js'
import { createCloudSources } from './lifecycle/notices/create-cloud-sources.js'
import { SignalSource } from './lifecycle/notices/signals.js'
import { ServerState } from './lifecycle/server-state.js'
import { createLogger } from './logger.js'
import { createMetrics } from './metrics.js'

// Process entry: config → app → listen → lifecycle. Everything else lives in modules.

function exitOnConfigError (error: unknown): never {
  if (error instanceof ConfigError) {
    process.stderr.write(`spotgate: ${error.message}\n`)
    process.exit(EX_CONFIG)
  }
  throw error
}

const config = (() => { try { return loadConfig() } catch (error) { return exitOnConfigError(error) } })()
const log = createLogger(config)
const metrics = createMetrics()
const state = new ServerState(metrics)
const entries = await scanModelRepository(config.modelRepository, config.modelDefaults).catch(exitOnConfigError)
const models = new ModelRegistry(entries, log, metrics)
const journal = createJournal(config, { metrics, log })
const admin = new AdminSource()
const { app, service } = await buildServer(config, { models, metrics, state, log, journal, admin })

// With Redis, this instance is part of a fleet: it keeps a lease and replays its peers' unfinished work.
const fleet = journal instanceof RedisJournal
  ? {
      leases: new LeaseKeeper(journal, {
        leaseTtlMs: config.leaseTtlMs,
        orphanAfterMs: Math.max(5000, 4 * config.redisCommandTimeoutMs),
        isLocallyActive: (id) => service.isActive(id),
        log,
        metrics
      }),
      replayer: new ReplayWorker({
        journal,
        concurrency: config.replayConcurrency,
        maxAttempts: config.replayMaxAttempts,
        claimIdleMs: config.leaseTtlMs,
        canTakeWork: () => state.phase === 'ready',
        isLocallyActive: (id) => service.isActive(id),
        execute: (job) => service.replay(job),
        giveUp: (id, attempts, lastError) => service.giveUp(id, attempts, lastError),
        log,
        metrics
      })
    }
  : undefined

const drain = new Drain({
  settings: config,
  state,
  service,
  journal,
  sources: [new SignalSource('SIGTERM'), new SignalSource('SIGINT'), admin, ...createCloudSources(config, { log, metrics })],
  log,
  metrics,
  closeListener: () => app.close(),
  shutdown: async () => {
    await fleet?.replayer.stop()
    await fleet?.leases.release()
    await journal.close()
    await models.close()
  },
  exit: (code) => process.exit(code)
})
drain.watch()
fleet?.leases.start()

await app.listen({ host: config.host, port: config.port })
try {
  await models.load()
  if (state.phase === 'starting') {
    state.enter('ready')
    fleet?.replayer.start()
    log.info({ models: models.all().map((m) => `${m.name}/${m.version}`), journal: journal.kind }, 'ready')
  }
} catch (error) {
  // A notice during start-up closes the models under the loader; the drain exits then.
  if (state.phase === 'starting') {
    log.fatal({ err: error }, 'model repository failed to load')
    exitOnConfigError(error)
  }
}
