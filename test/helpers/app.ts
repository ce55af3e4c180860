import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config.js'
import { ModelRegistry } from '../../src/inference/model-registry.js'
import { scanModelRepository } from '../../src/inference/model-repository.js'
import { createJournal } from '../../src/journal/create-journal.js'
import type { Journal } from '../../src/journal/journal.js'
import { ServerState } from '../../src/lifecycle/server-state.js'
import { createLogger } from '../../src/logger.js'
import { createMetrics, type Metrics } from '../../src/metrics.js'
import { makeRepository, type ModelRepository, type TestModel } from './model-repo.js'

/** What a test hands in to be cleaned up when it ends: a TestContext, or node:test's `after`. */
export interface Cleanup {
  after: (fn: () => Promise<void> | void) => void
}

export interface TestAppOptions {
  /** Models in the temporary repository (default: classifier and tabular). */
  readonly models?: readonly TestModel[]
  /** config.json overrides per model, merged over the catalog's own. */
  readonly configs?: Record<string, object>
  /** Environment for loadConfig, over the test defaults (the process environment is not read). */
  readonly env?: Record<string, string>
}

export interface TestApp {
  readonly app: FastifyInstance
  readonly config: Config
  readonly metrics: Metrics
  readonly state: ServerState
  readonly registry: ModelRegistry
  readonly journal: Journal
  readonly repo: ModelRepository
}

/** Test defaults: quiet, one CPU instance per model version. */
const DEFAULT_ENV: Record<string, string> = {
  LOG_LEVEL: 'silent',
  MODEL_INSTANCES: '1',
  EXECUTION_PROVIDERS: 'cpu',
  PREEMPTION_SOURCES: 'none'
}

/**
 * Builds the server as `src/main.ts` does (config → scan → journal → app → load
 * models → ready) on real onnxruntime sessions, without listening; use `app.inject`.
 * Everything is closed and the repository removed when `t` ends.
 */
export async function buildTestApp (t: Cleanup, options: TestAppOptions = {}): Promise<TestApp> {
  const repo = await makeRepository(options.models ?? ['classifier', 'tabular'], options.configs)
  // Filled in below; closed in reverse order whatever step a failure stopped at.
  const built: { registry?: ModelRegistry, app?: FastifyInstance, journal?: Journal } = {}
  t.after(async () => {
    await built.app?.close()
    await built.registry?.close()
    await built.journal?.close()
    await repo.cleanup()
  })
  const config = loadConfig({ ...DEFAULT_ENV, MODEL_REPOSITORY: repo.dir, ...options.env }, false)
  const log = createLogger(config)
  const metrics = createMetrics()
  const state = new ServerState(metrics)
  const entries = await scanModelRepository(config.modelRepository, config.modelDefaults)
  const registry = built.registry = new ModelRegistry(entries, log, metrics)
  const journal = built.journal = createJournal(config, { metrics, log })
  const app = built.app = await buildApp(config, { models: registry, metrics, state, log, journal })
  await registry.load()
  state.enter('ready')
  return { app, config, metrics, state, registry, journal, repo }
}

/**
 * Cleanups for resources a file's `before` hook creates: node:test's `after` called
 * inside a hook runs at the hook's end, so they are collected and run by `runAll`
 * from the file's own `after`, last registered first.
 */
export function fileCleanup (): Cleanup & { add: (fn: () => Promise<void> | void) => void, runAll: () => Promise<void> } {
  const cleanups: Array<() => Promise<void> | void> = []
  const add = (fn: () => Promise<void> | void): void => { cleanups.push(fn) }
  return {
    after: add,
    add,
    runAll: async () => { for (const cleanup of cleanups.splice(0).reverse()) await cleanup() }
  }
}
