import { performance } from 'node:perf_hooks'
import type { Cancellation } from './cancellation.js'
import { allocate, type TensorData } from './datatypes.js'
import { WorkerCrashed, type InstancePool, type RunResult } from './instance-pool.js'
import type { Tensor } from './signature.js'

export interface BatchPolicy {
  /** Merge requests into one run; only for models whose inputs and outputs all have a dynamic first dimension. */
  readonly merge: boolean
  readonly maxBatchSize: number
  readonly maxQueueDelayMicros: number
  readonly preferredBatchSizes: readonly number[]
  readonly maxQueueSize: number
}

export interface JobTiming {
  readonly queueMs: number
  readonly inferenceMs: number
  readonly batchSize: number
}

export interface JobResult {
  readonly outputs: readonly Tensor[]
  readonly timing: JobTiming
}

export interface SubmitOptions {
  /** The request holds a place taken with `tryReserve`. */
  readonly reserved?: boolean
  readonly onStart?: () => void
  readonly cancellation?: Cancellation
}

export interface BatchObserver {
  batchStarted?: (rows: number, requests: number) => void
  queueDepth?: (depth: number) => void
}

interface Job {
  readonly inputs: readonly Tensor[]
  readonly outputs: readonly string[] | undefined
  readonly rows: number
  /** Jobs merge only with jobs of the same key: equal datatypes and non-batch dimensions. */
  readonly key: string
  readonly enqueuedAt: number
  readonly resolve: (result: JobResult) => void
  readonly reject: (error: Error) => void
  onStart?: () => void
  /** Runs alone: its merged batch failed, and it is retried on its own so one bad request fails only itself. */
  solo?: boolean
  /** Already re-run once after its worker thread died under it. */
  retried?: boolean
}

const SCAN_LIMIT_FACTOR = 4

/**
 * Dynamic batcher of one model version, in the manner of Triton's: requests wait up
 * to `maxQueueDelayMicros` for company, a batch closes at `maxBatchSize` rows (or at
 * a preferred size), and results are split back per request.
 */
export class Batcher {
  private queue: Job[] = []
  private timer: NodeJS.Timeout | undefined
  private pumpScheduled = false
  private reserved = 0

  constructor (private readonly pool: InstancePool, private readonly policy: BatchPolicy, private readonly observer: BatchObserver = {}) {
    pool.on('idle', () => this.pump())
  }

  get depth (): number {
    return this.queue.length
  }

  get hasRoom (): boolean {
    return this.queue.length + this.reserved < this.policy.maxQueueSize
  }

  /**
   * Holds a queue place for a request while it is being journaled, so requests
   * arriving together cannot overfill the queue. False when the queue is full.
   */
  tryReserve (): boolean {
    if (!this.hasRoom) return false
    this.reserved++
    return true
  }

  /** Gives back a place taken with `tryReserve` that will not be submitted. */
  releaseReservation (): void {
    if (this.reserved > 0) this.reserved--
  }

  /**
   * Queues a request. `onStart` fires when it is handed to a model instance, so the
   * caller can tell queued from running; cancelling takes it out of the queue
   * if it has not started (a running batch cannot be stopped).
   */
  submit (inputs: readonly Tensor[], outputs?: readonly string[], options: SubmitOptions = {}): Promise<JobResult> {
    if (options.reserved === true) this.releaseReservation()
    return new Promise((resolve, reject) => {
      const rows = this.policy.maxBatchSize > 0 ? inputs[0].shape[0] : 1
      const key = this.policy.merge ? inputs.map((t) => `${t.datatype}:${t.shape.slice(1).join('x')}`).join('|') : ''
      const job: Job = { inputs, outputs, rows, key, enqueuedAt: performance.now(), resolve, reject, ...(options.onStart && { onStart: options.onStart }) }
      const { cancellation } = options
      if (cancellation !== undefined) {
        if (cancellation.cancelled !== undefined) return reject(cancellation.cancelled)
        cancellation.onCancel((reason) => this.remove(job, reason))
      }
      this.queue.push(job)
      this.schedulePump()
      this.observer.queueDepth?.(this.queue.length)
    })
  }

  private remove (job: Job, reason: Error): void {
    const index = this.queue.indexOf(job)
    if (index === -1) return
    this.queue.splice(index, 1)
    this.observer.queueDepth?.(this.queue.length)
    job.reject(reason)
  }

  /**
   * Dispatching at the end of the event-loop turn lets every request that arrived in
   * it (the journal releases its accepts a group at a time) share one batch, with no
   * timer, so batching costs nothing when max_queue_delay is 0.
   */
  private schedulePump (): void {
    if (this.pumpScheduled) return
    this.pumpScheduled = true
    setImmediate(() => {
      this.pumpScheduled = false
      this.pump()
    })
  }

  private pump (): void {
    while (this.queue.length > 0 && this.pool.idleCount > 0) {
      const batch = this.policy.merge ? this.collect() : [this.queue.shift() as Job]
      if (batch === undefined) return
      this.dispatch(batch)
    }
  }

  /** The next batch, or undefined when it should wait for more requests. */
  private collect (): Job[] | undefined {
    const head = this.queue[0]
    if (head.solo === true) return [this.queue.shift() as Job]
    const picked: Job[] = [head]
    let rows = head.rows
    const limit = Math.min(this.queue.length, this.policy.maxBatchSize * SCAN_LIMIT_FACTOR)
    for (let i = 1; i < limit && rows < this.policy.maxBatchSize; i++) {
      const job = this.queue[i]
      if (job.key === head.key && job.solo !== true && rows + job.rows <= this.policy.maxBatchSize) {
        picked.push(job)
        rows += job.rows
      }
    }
    const waitedMicros = (performance.now() - head.enqueuedAt) * 1000
    const full = rows >= this.policy.maxBatchSize || this.policy.preferredBatchSizes.includes(rows)
    if (!full && waitedMicros < this.policy.maxQueueDelayMicros) {
      this.armTimer((this.policy.maxQueueDelayMicros - waitedMicros) / 1000)
      return undefined
    }
    const chosen = new Set(picked)
    this.queue = this.queue.filter((job) => !chosen.has(job))
    return picked
  }

  private armTimer (ms: number): void {
    if (this.timer !== undefined) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.pump()
    }, Math.max(0, ms))
  }

  private dispatch (batch: Job[]): void {
    this.observer.queueDepth?.(this.queue.length)
    const started = performance.now()
    const rows = batch.reduce((sum, job) => sum + job.rows, 0)
    for (const job of batch) job.onStart?.()
    this.observer.batchStarted?.(rows, batch.length)
    const { inputs, transfer } = batch.length === 1 ? ownInputs(batch[0].inputs) : concatenate(batch, rows)
    const outputs = requestedOutputs(batch)
    this.pool.run(inputs, outputs, transfer).then(
      (result) => settle(batch, result, started, rows),
      (error: Error) => {
        if (error instanceof WorkerCrashed) {
          // The instance failed, not the requests: run them again once on a live one. A lone
          // request's buffers went to the dead thread (detached, empty), so it cannot be resent.
          const retry = batch.filter((job) => job.retried !== true && job.inputs.every((t) => t.data.byteLength > 0))
          for (const job of batch) if (!retry.includes(job)) job.reject(error)
          for (const job of retry) job.retried = true
          this.queue.unshift(...retry)
          this.pump()
          return
        }
        if (batch.length === 1) return batch[0].reject(error)
        // A merged batch failed: run its requests one by one, so only the bad one fails.
        for (const job of batch) job.solo = true
        this.queue.unshift(...batch)
        this.pump()
      }
    )
  }
}

function requestedOutputs (batch: Job[]): readonly string[] | undefined {
  if (batch.some((job) => job.outputs === undefined)) return undefined
  return [...new Set(batch.flatMap((job) => job.outputs as string[]))]
}

/** The job's inputs as buffers that may be moved to the worker; views into shared memory are copied. */
function ownInputs (inputs: readonly Tensor[]): { inputs: Tensor[], transfer: ArrayBuffer[] } {
  const transfer: ArrayBuffer[] = []
  const owned = inputs.map((tensor) => {
    const { data } = tensor
    const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer
    const moved = whole && !transfer.includes(data.buffer as ArrayBuffer) ? data : data.slice()
    transfer.push(moved.buffer as ArrayBuffer)
    return { ...tensor, data: moved }
  })
  return { inputs: owned, transfer }
}

function concatenate (batch: Job[], rows: number): { inputs: Tensor[], transfer: ArrayBuffer[] } {
  const transfer: ArrayBuffer[] = []
  const inputs = batch[0].inputs.map((first, index) => {
    const total = first.data.length / first.shape[0] * rows
    const merged = allocate(first.datatype, total)
    let offset = 0
    for (const job of batch) {
      const part = job.inputs[index].data
      ;(merged as Uint8Array).set(part as Uint8Array, offset)
      offset += part.length
    }
    transfer.push(merged.buffer as ArrayBuffer)
    return { name: first.name, datatype: first.datatype, shape: [rows, ...first.shape.slice(1)], data: merged }
  })
  return { inputs, transfer }
}

function settle (batch: Job[], result: RunResult, started: number, rows: number): void {
  const misshaped = batch.length > 1 && result.outputs.find((t) => t.shape[0] !== rows)
  if (misshaped) {
    const error = new Error(`output '${misshaped.name}' has ${misshaped.shape[0]} rows for a batch of ${rows}; the model cannot be batched`)
    for (const job of batch) job.reject(error)
    return
  }
  let offset = 0
  for (const job of batch) {
    const outputs: Tensor[] = []
    for (const tensor of result.outputs) {
      if (job.outputs !== undefined && !job.outputs.includes(tensor.name)) continue
      outputs.push(batch.length === 1 ? tensor : sliceRows(tensor, offset, job.rows, rows))
    }
    offset += job.rows
    job.resolve({ outputs, timing: { queueMs: started - job.enqueuedAt, inferenceMs: result.inferenceMs, batchSize: rows } })
  }
}

function sliceRows (tensor: Tensor, firstRow: number, count: number, totalRows: number): Tensor {
  const perRow = tensor.data.length / totalRows
  const data = tensor.data.subarray(firstRow * perRow, (firstRow + count) * perRow) as TensorData
  return { ...tensor, shape: [count, ...tensor.shape.slice(1)], data }
}
