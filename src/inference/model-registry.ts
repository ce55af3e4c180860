import { dirname, sep } from 'node:path'
import type { Logger } from 'pino'
import { ConfigError } from '../config-error.js'
import { ModelNotFound, Unavailable } from '../errors.js'
import { modelMetrics, type Metrics, type ModelMetrics } from '../metrics.js'
import { truncate } from '../text.js'
import { Batcher } from './batcher.js'
import { InstancePool } from './instance-pool.js'
import type { Isolation } from './model-instance.js'
import type { ModelVersionEntry } from './model-repository.js'
import { isBatchable, type ModelSignature, type Tensor } from './signature.js'
import type { ModelLimits } from './validate.js'
import { warmupInputs } from './warmup.js'

/** One loaded model version, ready to run. */
export interface ServedModel {
  readonly name: string
  readonly version: string
  readonly signature: ModelSignature
  readonly limits: ModelLimits
  readonly batcher: Batcher
  /** This version's metric children, observed on every request. */
  readonly metrics: ModelMetrics
}

/**
 * What a model version that cannot load does to start-up: `exit` stops it (a fleet
 * notices a broken deploy), `skip` serves the other versions without it.
 */
export type ModelLoadFailure = 'exit' | 'skip'

export interface ModelRegistryOptions {
  readonly loadFailure?: ModelLoadFailure
  /** Where model instances run: worker threads, or child processes the gateway can stop mid-run. */
  readonly isolation?: Isolation
}

/** A model version as `POST /v2/repository/index` lists it. */
export interface RepositoryEntry {
  readonly name: string
  readonly version: string
  readonly state: 'READY' | 'UNAVAILABLE'
  /** Why an UNAVAILABLE version did not load; empty when READY. */
  readonly reason: string
}

/** Every model version of the repository; resolves names and versions for the routes. */
export class ModelRegistry {
  private readonly models = new Map<string, Map<string, ServedModel>>()
  /** Versions that failed to load under MODEL_LOAD_FAILURE=skip, with the reason told to clients. */
  private readonly unavailable = new Map<string, Map<string, string>>()
  private readonly pools: InstancePool[] = []
  private readonly poolsByModel = new Map<string, InstancePool>()
  private readonly loadFailure: ModelLoadFailure
  private readonly isolation: Isolation
  private loaded = false
  private loading: Promise<unknown> | undefined

  constructor (
    private readonly entries: readonly ModelVersionEntry[],
    private readonly log: Logger,
    private readonly metrics: Metrics,
    options: ModelRegistryOptions = {}
  ) {
    this.loadFailure = options.loadFailure ?? 'exit'
    this.isolation = options.isolation ?? 'thread'
  }

  get ready (): boolean {
    return this.loaded
  }

  /**
   * Starts every version's worker threads and warms them up. A version that fails to
   * load throws its ConfigError (naming the file) under `exit`, and is left out under `skip`.
   */
  async load (): Promise<void> {
    const loading = Promise.allSettled(this.entries.map((entry) => this.loadOne(entry)))
    this.loading = loading
    const results = await loading
    const failures = results.flatMap((result, i) => (result.status === 'rejected' ? [{ entry: this.entries[i], error: result.reason as Error }] : []))
    if (failures.length > 0 && this.loadFailure === 'exit') {
      await this.close()
      throw failures[0].error
    }
    for (const { entry, error } of failures) this.leaveOut(entry, error)
    this.loaded = true
  }

  private leaveOut (entry: ModelVersionEntry, error: Error): void {
    const labels = { model: entry.name, version: entry.version }
    let versions = this.unavailable.get(entry.name)
    if (versions === undefined) this.unavailable.set(entry.name, (versions = new Map()))
    versions.set(entry.version, clientReason(entry, error.message))
    this.metrics.modelLoadFailures.inc(labels)
    this.log.error({ ...labels, reason: error.message }, `model ${entry.name}/${entry.version} failed to load; serving the others without it (MODEL_LOAD_FAILURE=skip)`)
  }

  private async loadOne (entry: ModelVersionEntry): Promise<void> {
    if (entry.problem !== undefined) throw new ConfigError(entry.problem)
    const started = Date.now()
    const labels = { model: entry.name, version: entry.version }
    let started_: Awaited<ReturnType<typeof InstancePool.start>>
    try {
      started_ = await InstancePool.start(entry, this.isolation)
    } catch (error) {
      throw new ConfigError(`MODEL_REPOSITORY: cannot load ${entry.path}: ${(error as Error).message}`)
    }
    const { pool, loaded } = started_
    const openMs = Date.now() - started
    const batchable = isBatchable(loaded.signature)
    const maxBatchSize = batchable ? entry.config.maxBatchSize : 0
    let warmup: Tensor[] | undefined
    try {
      warmup = await warmupInputs(entry.config.warmup, loaded.signature, { maxBatchSize })
    } catch (error) {
      await pool.close()
      throw error
    }
    this.pools.push(pool)
    this.poolsByModel.set(`${entry.name}/${entry.version}`, pool)
    const warmupFailed = (failures: readonly Error[], of: number): void => {
      if (failures.length === 0) return
      this.metrics.modelWarmupFailures.inc(labels, failures.length)
      // Many valid models reject all-zero inputs (a zero divisor, a zero target shape) yet serve real requests.
      this.log.warn({ ...labels, reason: failures[0].message }, `warm-up run of ${entry.name}/${entry.version} failed on ${failures.length} of ${of} instances; serving it anyway`)
    }
    pool.on('warmup-failed', (error: Error) => warmupFailed([error], 1))
    const warmupStarted = Date.now()
    warmupFailed(await pool.warmUp(warmup), pool.size)
    const warmupMs = Date.now() - warmupStarted
    for (const fallback of loaded.fallbacks) {
      this.log.warn({ ...labels, provider: fallback.provider, reason: fallback.reason }, `execution provider ${fallback.provider} unavailable for ${entry.name}/${entry.version}, falling back`)
      this.metrics.providerFallbacks.inc({ ...labels, provider: fallback.provider })
    }
    this.metrics.executionProvider.set({ ...labels, provider: loaded.provider }, 1)
    pool.on('instance-died', (error: Error) => {
      this.log.error({ ...labels, err: error }, 'model worker died; starting a replacement')
      this.metrics.modelInstanceRestarts.inc(labels)
    })
    pool.on('instance-replaced', () => this.log.info(labels, `model ${entry.name}/${entry.version}: a replacement instance is running`))

    const merge = batchable && entry.config.dynamicBatching && maxBatchSize > 1
    const observed = modelMetrics(this.metrics, entry.name, entry.version)
    const batcher = new Batcher(pool, {
      merge,
      maxBatchSize,
      maxQueueDelayMicros: entry.config.maxQueueDelayMicros,
      preferredBatchSizes: entry.config.preferredBatchSizes,
      maxQueueSize: entry.config.maxQueueSize
    }, {
      batchStarted: (rows) => observed.batchSize.observe(rows),
      runFinished: (ms) => observed.inferenceDuration.observe(ms / 1000),
      queueDepth: (depth) => observed.queueDepth.set(depth),
      mergingStopped: (reason) => this.log.warn({ ...labels, reason }, `model ${entry.name}/${entry.version} cannot be batched (${reason}); its requests now run one at a time`)
    })

    const model: ServedModel = {
      name: entry.name,
      version: entry.version,
      signature: loaded.signature,
      limits: { maxBatchSize },
      batcher,
      metrics: observed
    }
    let versions = this.models.get(entry.name)
    if (versions === undefined) this.models.set(entry.name, (versions = new Map()))
    versions.set(entry.version, model)
    this.log.info({ ...labels, provider: loaded.provider, instances: pool.size, batching: merge ? maxBatchSize : 0, ms: Date.now() - started, openMs, warmupMs }, `model ${entry.name}/${entry.version} loaded`)
  }

  /** Why some model cannot run requests now (every worker of a version died and none restarted yet). */
  unavailableReason (): string | undefined {
    if (!this.loaded) return undefined
    const starved = [...this.poolsByModel].filter(([, pool]) => pool.size === 0).map(([label]) => label)
    return starved.length === 0 ? undefined : `no running model instance for ${starved.join(', ')}`
  }

  /** The named version, or the highest that loaded when none is given. */
  resolve (name: string, version?: string): ServedModel {
    if (!this.loaded) throw new Unavailable('models are still loading')
    const versions = this.models.get(name)
    const failed = this.unavailable.get(name)
    if (versions === undefined && failed === undefined) throw new ModelNotFound(`unknown model '${truncate(name)}'`)
    if (version === undefined) {
      const highest = this.versions(name).at(-1)
      if (highest !== undefined) return versions?.get(highest) as ServedModel
      const reasons = [...(failed as Map<string, string>)].map(([v, reason]) => `version ${v}: ${reason}`)
      throw new ModelNotFound(`model '${name}' is unavailable: ${reasons.join('; ')}`)
    }
    const model = versions?.get(version)
    if (model !== undefined) return model
    const reason = failed?.get(version)
    if (reason !== undefined) throw new ModelNotFound(`model '${name}' version '${version}' is unavailable: ${reason}`)
    const known = [...this.versions(name), ...(failed?.keys() ?? [])].sort((a, b) => Number(a) - Number(b))
    throw new ModelNotFound(`model '${name}' has no version '${truncate(version)}' (versions: ${known.join(', ')})`)
  }

  /** The versions of `name` that loaded, lowest first. */
  versions (name: string): string[] {
    return [...(this.models.get(name)?.keys() ?? [])].sort((a, b) => Number(a) - Number(b))
  }

  /** Every version of the repository, loaded or not, by name and then version. */
  index (): RepositoryEntry[] {
    const entries: RepositoryEntry[] = [
      ...this.all().map((m) => ({ name: m.name, version: m.version, state: 'READY' as const, reason: '' })),
      ...[...this.unavailable].flatMap(([name, versions]) => [...versions].map(([version, reason]) => ({ name, version, state: 'UNAVAILABLE' as const, reason })))
    ]
    return entries.sort((a, b) => (a.name === b.name ? Number(a.version) - Number(b.version) : a.name < b.name ? -1 : 1))
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

/**
 * The load error as clients may read it: without the MODEL_REPOSITORY prefix meant for
 * operators, and with paths relative to the repository root rather than the machine's.
 */
function clientReason (entry: ModelVersionEntry, message: string): string {
  const root = dirname(dirname(dirname(entry.path)))
  return message.replace(/^MODEL_REPOSITORY: /, '').split(`${root}${sep}`).join('')
}
