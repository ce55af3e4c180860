import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import type { InstanceInit } from './instance-protocol.js'
import { startInstance, type Isolation, type LoadedInstance, type ModelInstance, type RunResult } from './model-instance.js'
import type { ModelVersionEntry } from './model-repository.js'
import type { Tensor } from './signature.js'

export { InstanceCrashed, RunError, type LoadedInstance, type RunResult } from './model-instance.js'

const RESPAWN_MAX_DELAY_MS = 30_000
/** Weight of the newest run in the run-time estimate: recent runs count most, one outlier little. */
const RUN_WEIGHT = 0.2

/**
 * The instances (worker threads or child processes, MODEL_ISOLATION) that run one model
 * version. Emits `idle` whenever an instance can take another batch, so the batcher
 * dispatches without polling.
 */
export class InstancePool extends EventEmitter {
  private instances: ModelInstance[] = []
  private closed = false
  private warmup: readonly Tensor[] | undefined
  /** The run each busy instance is in: when it started and how many rows it has. */
  private readonly runs = new Map<ModelInstance, { startedAt: number, rows: number }>()
  private meanRunMs: number | undefined
  private meanRunRows = 1
  /** Whether the estimate comes from real requests yet, or only from warm-up runs (often on zeros, unrepresentative). */
  private estimateFromRequests = false

  private constructor (private readonly init: InstanceInit, readonly isolation: Isolation) {
    super()
  }

  static async start (entry: ModelVersionEntry, isolation: Isolation): Promise<{ pool: InstancePool, loaded: LoadedInstance }> {
    const init: InstanceInit = {
      path: entry.path,
      providers: entry.config.executionProviders,
      cudaDeviceId: entry.config.cudaDeviceId,
      intraOpThreads: entry.config.intraOpThreads
    }
    const pool = new InstancePool(init, isolation)
    const started = await Promise.allSettled(Array.from({ length: entry.config.instanceCount }, () => startInstance(isolation, init)))
    const failure = started.find((s) => s.status === 'rejected')
    const ready = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []))
    if (failure !== undefined) {
      await Promise.all(ready.map(({ instance }) => instance.stop()))
      const reason: unknown = (failure as PromiseRejectedResult).reason
      throw reason instanceof Error ? reason : new Error(String(reason))
    }
    for (const { instance } of ready) pool.adopt(instance)
    return { pool, loaded: ready[0].loaded }
  }

  get size (): number {
    return this.instances.length
  }

  get idleCount (): number {
    let count = 0
    for (const instance of this.instances) if (instance.idle) count++
    return count
  }

  /**
   * Runs `inputs` once on every instance (and later on each replacement of a dead one),
   * before any request. Resolves with the runs that failed: a model that rejects its
   * warm-up inputs may still serve real requests, so failing is the caller's to judge.
   */
  async warmUp (inputs: readonly Tensor[] | undefined): Promise<Error[]> {
    this.warmup = inputs
    if (inputs === undefined) return []
    // No transfer list: each instance gets its own copy of the inputs.
    const rows = inputs[0]?.shape[0] ?? 1
    const runs = await Promise.allSettled(this.instances.map((instance) => this.timed(instance, rows, instance.run(inputs, undefined, []), true)))
    return runs.flatMap((run) => (run.status === 'rejected' ? [run.reason as Error] : []))
  }

  /** Runs on an idle instance; the caller checks `idleCount` first. */
  run (inputs: readonly Tensor[], outputs: readonly string[] | undefined, transfer: ArrayBuffer[], rows = 1): Promise<RunResult> {
    const instance = this.instances.find((i) => i.idle)
    if (instance === undefined) return Promise.reject(new Error('no idle model instance'))
    return this.timed(instance, rows, instance.run(inputs, outputs, transfer))
  }

  /**
   * How long a run of `rows` rows takes, from the runs seen so far (warm-up included):
   * an exponentially weighted mean of whole runs, scaled by rows beyond the usual batch.
   * Undefined before any run.
   */
  estimateRunMs (rows: number): number | undefined {
    if (this.meanRunMs === undefined) return undefined
    return this.meanRunMs * Math.max(1, rows / this.meanRunRows)
  }

  /**
   * How long a run of `rows` rows is expected to take at `now`: the estimate from past
   * runs, but never less than a run in progress has already taken (the first real
   * requests after a warm-up on zeros are often far slower than it).
   */
  expectedRunMs (rows: number, now: number): number | undefined {
    let longest: number | undefined
    for (const running of this.runs.values()) longest = Math.max(longest ?? 0, now - running.startedAt)
    const estimate = this.estimateRunMs(rows)
    if (estimate === undefined) return longest
    return Math.max(estimate, longest ?? 0)
  }

  /** When each live instance is expected to be free (performance.now() time), given `now`. */
  freeAt (now: number): number[] {
    return this.instances.map((instance) => {
      const running = this.runs.get(instance)
      if (running === undefined) return now
      const estimate = this.estimateRunMs(running.rows) ?? 0
      // A run already past its estimate is expected to take as long again as it has so far.
      const elapsed = now - running.startedAt
      return now + (elapsed < estimate ? estimate - elapsed : elapsed)
    })
  }

  private timed (instance: ModelInstance, rows: number, run: Promise<RunResult>, warmup = false): Promise<RunResult> {
    const startedAt = performance.now()
    this.runs.set(instance, { startedAt, rows })
    return run.then((result) => {
      this.observeRun(performance.now() - startedAt, rows, warmup)
      return result
    }).finally(() => this.runs.delete(instance))
  }

  private observeRun (ms: number, rows: number, warmup: boolean): void {
    if (warmup && this.estimateFromRequests) return
    if (this.meanRunMs === undefined || (!warmup && !this.estimateFromRequests)) {
      this.estimateFromRequests = !warmup
      this.meanRunMs = ms
      this.meanRunRows = rows
      return
    }
    this.meanRunMs += RUN_WEIGHT * (ms - this.meanRunMs)
    this.meanRunRows += RUN_WEIGHT * (rows - this.meanRunRows)
  }

  /** Whether a run in progress can be stopped (process instances), or only waited for (threads). */
  get stoppable (): boolean {
    return this.isolation === 'process'
  }

  /**
   * Stops every instance: a process at once, even inside a run whose requests were handed
   * to the fleet; a thread once its current run has ended (onnxruntime cannot interrupt
   * a run, and terminating a thread inside one aborts the whole process).
   */
  async close (): Promise<void> {
    this.closed = true
    const instances = this.instances
    this.instances = []
    await Promise.all(instances.map((instance) => instance.stop()))
  }

  private adopt (instance: ModelInstance): ModelInstance {
    instance.onSettled = () => this.emit('idle')
    instance.onDeath = (error) => this.replace(instance, error)
    this.instances.push(instance)
    return instance
  }

  private replace (dead: ModelInstance, error: Error): void {
    if (this.closed || !this.instances.includes(dead)) return
    this.instances = this.instances.filter((i) => i !== dead)
    this.emit('instance-died', error)
    void this.respawn(500)
  }

  /** Starts a replacement, retrying with backoff: a model left with no instance would stall its queue for good. */
  private async respawn (delayMs: number): Promise<void> {
    try {
      const { instance: started } = await startInstance(this.isolation, this.init)
      if (this.closed) {
        void started.stop()
        return
      }
      const instance = this.adopt(started)
      // Busy with its warm-up, the replacement takes no batch until that run ends.
      if (this.warmup !== undefined) instance.run(this.warmup, undefined, []).catch((error: Error) => this.emit('warmup-failed', error))
      this.emit('instance-replaced')
      this.emit('idle')
    } catch (respawnError) {
      this.emit('instance-died', respawnError as Error)
      if (this.closed) return
      setTimeout(() => { void this.respawn(Math.min(delayMs * 2, RESPAWN_MAX_DELAY_MS)) }, delayMs).unref()
    }
  }
}
