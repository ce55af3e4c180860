#!/usr/bin/env node
import { buildApp } from './app.js'
import { loadConfig } from './config.js'
import { ConfigError, EX_CONFIG } from './config-error.js'
import { ModelRegistry } from './inference/model-registry.js'
import { createJournal } from './journal/create-journal.js'
import { scanModelRepository } from './inference/model-repository.js'
import { ServerState } from './lifecycle/server-state.js'
import { createLogger } from './logger.js'
import { createMetrics } from './metrics.js'

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
const app = await buildApp(config, { models, metrics, state, log, journal })

let stopping = false
async function shutdown (signal: string): Promise<void> {
  if (stopping) return
  stopping = true
  log.info({ signal }, 'shutting down: finishing requests in flight')
  state.enter('draining')
  await app.close()
  await models.close()
  await journal.close()
  state.enter('stopped')
  log.info('stopped')
  process.exit(0)
}
process.on('SIGTERM', () => { void shutdown('SIGTERM') })
process.on('SIGINT', () => { void shutdown('SIGINT') })

await app.listen({ host: config.host, port: config.port })
try {
  await models.load()
} catch (error) {
  log.fatal({ err: error }, 'model repository failed to load')
  exitOnConfigError(error)
}
if (!stopping) {
  state.enter('ready')
  log.info({ models: models.all().map((m) => `${m.name}/${m.version}`) }, 'ready')
}
