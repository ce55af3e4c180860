import { Worker } from 'node:worker_threads'
import { EventEmitter } from 'node:events'
import type { ModelVersionEntry } from './model-repository.js'
import type { ExecutionProvider } from './providers.js'
import type { ModelSignature, Tensor } from './signature.js'
import type { ProviderFallback, RunCommand, WorkerEvent, WorkerInit } from './worker-protocol.js'

const WORKER_SCRIPT = new URL('./worker.js', import.meta.url)

export interface RunResult {
  readonly outputs: readonly Tensor[]
  readonly inferenceMs: number
}

export interface LoadedInstance {
  readonly provider: ExecutionProvider
  readonly fallbacks: readonly ProviderFallback[]
  readonly signature: ModelSignature
}

interface Pending {
  resolve: (result: RunResult) => void
  reject: (error: Error) => void
}

/** An error raised by onnxruntime while running a batch: the request's fault or the model's, never retried. */
export class RunError extends Error {
  override readonly name = 'RunError'
}

/** The worker thread died under a run: the instance's fault, not the request's, so the run may be retried. */
export class WorkerCrashed extends Error {
  override readonly name = 'WorkerCrashed'
}

const RESPAWN_MAX_DELAY_MS = 30_000

class ModelInstance {
  private pending: Pending | undefined
  private nextJobId = 0

  constructor (readonly worker: Worker, private readonly onSettled: () => void, private readonly onDeath: (error: Error) => void) {
    worker.on('message', (event: WorkerEvent) => {
      if (event.type !== 'result' && event.type !== 'run-failed') return
      const pending = this.pending
      this.pending = undefined
      if (event.type === 'result') pending?.resolve({ outputs: event.outputs, inferenceMs: event.inferenceMs })
      else pending?.reject(new RunError(event.message))
      this.onSettled()
    })
    worker.on('error', (error) => this.die(error))
    worker.on('exit', (code) => this.die(new Error(`model worker exited with code ${code}`)))
  }

  get idle (): boolean {
    return this.pending === undefined
  }

  /** Resolves when the run in progress (if any) has ended. */
  whenIdle (): Promise<void> {
    const pending = this.pending
    if (pending === undefined) return Promise.resolve()
    return new Promise((resolve) => {
      const { resolve: done, reject: failed } = pending
      pending.resolve = (result) => { done(result); resolve() }
      pending.reject = (error) => { failed(error); resolve() }
    })
  }

  run (inputs: readonly Tensor[], outputs: readonly string[] | undefined, transfer: ArrayBuffer[]): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject }
      const command: RunCommand = { type: 'run', jobId: this.nextJobId++, inputs, ...(outputs !== undefined && { outputs }) }
      this.worker.postMessage(command, transfer)
    })
  }

  private die (error: Error): void {
    const pending = this.pending
    this.pending = undefined
    pending?.reject(new WorkerCrashed(`model worker failed: ${error.message}`))
    this.onDeath(error)
  }
}

function spawn (init: WorkerInit): Promise<{ worker: Worker, loaded: LoadedInstance }> {
  const worker = new Worker(WORKER_SCRIPT, { workerData: init })
  return new Promise((resolve, reject) => {
    const fail = (error: Error): void => { void worker.terminate(); reject(error) }
    const exited = (code: number): void => reject(new Error(`model worker exited with code ${code} while loading`))
    worker.once('error', fail)
    worker.once('exit', exited)
    // The start-up listeners stay until the instance attaches its own: an error event
    // with no listener would bring the whole process down.
    worker.once('message', (event: WorkerEvent) => {
      if (event.type === 'ready') resolve({ worker, loaded: { provider: event.provider, fallbacks: event.fallbacks, signature: event.signature } })
      else if (event.type === 'load-failed') fail(new Error(event.message))
      else fail(new Error(`unexpected message from model worker: ${event.type}`))
    })
  })
}

/**
 * The worker threads that run one model version. Emits `idle` whenever an instance
 * can take another batch, so the batcher dispatches without polling.
 */
export class InstancePool extends EventEmitter {
  private instances: ModelInstance[] = []
  private closed = false

  private constructor (private readonly init: WorkerInit) {
    super()
  }

  static async start (entry: ModelVersionEntry): Promise<{ pool: InstancePool, loaded: LoadedInstance }> {
    const init: WorkerInit = {
      path: entry.path,
      providers: entry.config.executionProviders,
      cudaDeviceId: entry.config.cudaDeviceId,
      intraOpThreads: entry.config.intraOpThreads,
      warmup: entry.config.warmup
    }
    const pool = new InstancePool(init)
    const started = await Promise.allSettled(Array.from({ length: entry.config.instanceCount }, () => spawn(init)))
    const failure = started.find((s) => s.status === 'rejected')
    const workers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []))
    if (failure !== undefined) {
      await Promise.all(workers.map(({ worker }) => worker.terminate()))
      const reason: unknown = (failure as PromiseRejectedResult).reason
      throw reason instanceof Error ? reason : new Error(String(reason))
    }
    for (const { worker } of workers) pool.adopt(worker)
    return { pool, loaded: workers[0].loaded }
  }

  get size (): number {
    return this.instances.length
  }

  get idleCount (): number {
    let count = 0
    for (const instance of this.instances) if (instance.idle) count++
    return count
  }

  /** Runs on an idle instance; the caller checks `idleCount` first. */
  run (inputs: readonly Tensor[], outputs: readonly string[] | undefined, transfer: ArrayBuffer[]): Promise<RunResult> {
    const instance = this.instances.find((i) => i.idle)
    if (instance === undefined) return Promise.reject(new Error('no idle model instance'))
    return instance.run(inputs, outputs, transfer)
  }

  /**
   * Stops every worker once its current run has ended: onnxruntime cannot interrupt a
   * run, and terminating a thread inside one aborts the whole process.
   */
  async close (): Promise<void> {
    this.closed = true
    const instances = this.instances
    this.instances = []
    await Promise.all(instances.map(async (instance) => {
      await instance.whenIdle()
      await instance.worker.terminate()
    }))
  }

  private adopt (worker: Worker): void {
    const instance: ModelInstance = new ModelInstance(worker, () => this.emit('idle'), (error) => this.replace(instance, error))
    this.instances.push(instance)
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
      const { worker } = await spawn(this.init)
      if (this.closed) {
        void worker.terminate()
        return
      }
      this.adopt(worker)
      this.emit('idle')
    } catch (respawnError) {
      this.emit('instance-died', respawnError as Error)
      if (this.closed) return
      setTimeout(() => { void this.respawn(Math.min(delayMs * 2, RESPAWN_MAX_DELAY_MS)) }, delayMs).unref()
    }
  }
}
