import type { FastifyInstance } from 'fastify'
import { loadConfig, type Config } from '../../src/config.js'
import type { ModelRegistry } from '../../src/inference/model-registry.js'
import { createInstance, type Instance } from '../../src/instance.js'
import type { Journal } from '../../src/journal/journal.js'
import type { ServerState } from '../../src/lifecycle/server-state.js'
import type { Metrics } from '../../src/metrics.js'
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
  /** With Redis: keep a lease and replay the fleet's work, as a served instance does. */
  readonly fleet?: boolean
  /** A repository the test prepared (and removes) itself, instead of one made from `models`. */
  readonly repository?: ModelRepository
}

export interface TestApp {
  readonly app: FastifyInstance
  readonly config: Config
  readonly metrics: Metrics
  readonly state: ServerState
  readonly registry: ModelRegistry
  readonly journal: Journal
  readonly repo: ModelRepository
  readonly instance: Instance
}

/** Test defaults: quiet, one CPU instance per model version. */
const DEFAULT_ENV: Record<string, string> = {
  LOG_LEVEL: 'silent',
  MODEL_INSTANCES: '1',
  EXECUTION_PROVIDERS: 'cpu',
  PREEMPTION_SOURCES: 'none'
}

/**
 * Builds the instance as `src/main.ts` does (createInstance, then start) on real
 * onnxruntime sessions, without listening; use `app.inject`. Without `fleet`, a
 * Redis-backed instance keeps no lease and replays nothing. Everything is closed and
 * the repository removed when `t` ends.
 */
export async function buildTestApp (t: Cleanup, options: TestAppOptions = {}): Promise<TestApp> {
  const repo = options.repository ?? await makeRepository(options.models ?? ['classifier', 'tabular'], options.configs)
  const built: { instance?: Instance } = {}
  t.after(async () => {
    await built.instance?.close()
    if (options.repository === undefined) await repo.cleanup()
  })
  const config = loadConfig({ ...DEFAULT_ENV, MODEL_REPOSITORY: repo.dir, ...options.env }, false)
  const instance = built.instance = await createInstance(config, { noticeSources: [], exit: () => {} })
  await instance.start({ leases: options.fleet === true, replay: options.fleet === true })
  const { app, metrics, state, models: registry, journal } = instance
  return { app, config, metrics, state, registry, journal, repo, instance }
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
