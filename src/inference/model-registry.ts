import type { FastifyBaseLogger } from 'fastify'
import { ConfigError } from '../config-error.js'
import { ModelNotFound, Unavailable } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { truncate } from '../text.js'
import { Batcher } from './batcher.js'
import { InstancePool } from './instance-pool.js'
import type { ModelConfig, ModelVersionEntry } from './model-repository.js'
import type { ExecutionProvider } from './providers.js'
import { isBatchable, type ModelSignature } from './signature.js'
import type { ModelLimits } from './validate.js'

/** One loaded model version, ready to run. */
export interface ServedModel {
  readonly name: string
  readonly version: string
  readonly path: string
  readonly config: ModelConfig
  readonly signature: ModelSignature
  readonly limits: ModelLimits
  readonly provider: ExecutionProvider
  readonly batcher: Batcher
}

/** Every model version of the repository; resolves names and versions for the routes. */
export class ModelRegistry {
  private readonly models = new Map<string, Map<string, ServedModel>>()
  private readonly pools: InstancePool[] = []
  private readonly poolsByModel = new Map<string, InstancePool>()
  private loaded = false
  private loading: Promise<unknown> | undefined

  constructor (private readonly entries: readonly ModelVersionEntry[], private readonly log: FastifyBaseLogger, private readonly metrics: Metrics) {}

  get ready (): boolean {
    return this.loaded
  }

  /** Starts every version's worker threads and warms them up; a failure names the model file. */
  async load (): Promise<void> {
    const loading = Promise.allSettled(this.entries.map((entry) => this.loadOne(entry)))
    this.loading = loading
    const results = await loading
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) {
      await this.close()
      throw failed.reason
    }
    this.loaded = true
  }

  private async loadOne (entry: ModelVersionEntry): Promise<void> {
    const started = Date.now()
    const labels = { model: entry.name, version: entry.version }
    let started_: Awaited<ReturnType<typeof InstancePool.start>>
    try {
      started_ = await InstancePool.start(entry)
    } catch (error) {
      throw new ConfigError(`MODEL_REPOSITORY: cannot load ${entry.path}: ${(error as Error).message}`)
    }
    const { pool, loaded } = started_
    this.pools.push(pool)
    this.poolsByModel.set(`${entry.name}/${entry.version}`, pool)
    for (const fallback of loaded.fallbacks) {
      this.log.warn({ ...labels, provider: fallback.provider, reason: fallback.reason }, `execution provider ${fallback.provider} unavailable for ${entry.name}/${entry.version}, falling back`)
      this.metrics.providerFallbacks.inc({ ...labels, provider: fallback.provider })
    }
    this.metrics.executionProvider.set({ ...labels, provider: loaded.provider }, 1)
    pool.on('instance-died', (error: Error) => {
      this.log.error({ ...labels, err: error }, 'model worker died; starting a replacement')
      this.metrics.modelInstanceRestarts.inc(labels)
    })

    const batchable = isBatchable(loaded.signature)
    const maxBatchSize = batchable ? entry.config.maxBatchSize : 0
    const merge = batchable && entry.config.dynamicBatching && maxBatchSize > 1
    const batcher = new Batcher(pool, {
      merge,
      maxBatchSize,
      maxQueueDelayMicros: entry.config.maxQueueDelayMicros,
      preferredBatchSizes: entry.config.preferredBatchSizes,
      maxQueueSize: entry.config.maxQueueSize
    }, {
      batchStarted: (rows) => this.metrics.batchSize.observe(labels, rows),
      queueDepth: (depth) => this.metrics.queueDepth.set(labels, depth)
    })

    const model: ServedModel = {
      name: entry.name,
      version: entry.version,
      path: entry.path,
      config: entry.config,
      signature: loaded.signature,
      limits: { maxBatchSize },
      provider: loaded.provider,
      batcher
    }
    let versions = this.models.get(entry.name)
    if (versions === undefined) this.models.set(entry.name, (versions = new Map()))
    versions.set(entry.version, model)
    this.log.info({ ...labels, provider: loaded.provider, instances: pool.size, batching: merge ? maxBatchSize : 0, ms: Date.now() - started }, `model ${entry.name}/${entry.version} loaded`)
  }

  /** Why some model cannot run requests now (every worker of a version died and none restarted yet). */
  unavailableReason (): string | undefined {
    if (!this.loaded) return undefined
    const starved = [...this.poolsByModel].filter(([, pool]) => pool.size === 0).map(([label]) => label)
    return starved.length === 0 ? undefined : `no running model instance for ${starved.join(', ')}`
  }

  /** The named version, or the highest when none is given. */
  resolve (name: string, version?: string): ServedModel {
    if (!this.loaded) throw new Unavailable('models are still loading')
    const versions = this.models.get(name)
    if (versions === undefined) throw new ModelNotFound(`unknown model '${truncate(name)}'`)
    if (version === undefined) return versions.get(this.versions(name).at(-1) as string) as ServedModel
    const model = versions.get(version)
    if (model === undefined) throw new ModelNotFound(`model '${name}' has no version '${truncate(version)}' (versions: ${this.versions(name).join(', ')})`)
    return model
  }

  versions (name: string): string[] {
    return [...(this.models.get(name)?.keys() ?? [])].sort((a, b) => Number(a) - Number(b))
  }

  all (): ServedModel[] {
    return [...this.models.values()].flatMap((versions) => [...versions.values()])
  }

  /** Stops every worker between runs; a load in progress is let finish first, since a thread cannot be stopped inside a run. */
  async close (): Promise<void> {
    this.loaded = false
    await this.loading
    await Promise.all(this.pools.splice(0).map((pool) => pool.close()))
  }
}
