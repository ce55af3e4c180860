import { performance } from 'node:perf_hooks'
import type { Cancellation } from './cancellation.js'
import { allocate, type NumericData, type TensorData } from './datatypes.js'
import { InstanceCrashed, RunError, type InstancePool, type RunResult } from './instance-pool.js'
import { elementCount, type Tensor } from './signature.js'

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
  /**
   * `batch`: a batch job's line. It waits in a lane of its own that a model instance takes
   * from only when no online request is queued, is never merged with online requests, and
   * counts neither towards the queue limit (429) nor the drain plan.
   */
  readonly lane?: Lane
}

export type Lane = 'online' | 'batch'

/** What a drain can keep of a model's queue: how many requests fit before the deadline, and the cancellations of those that do not. */
export interface DrainPlan {
  readonly queued: number
  readonly kept: number
  readonly late: readonly Cancellation[]
  /** The estimate of one run used, undefined before any run was seen. */
  readonly runMs: number | undefined
  readonly instances: number
}

export interface BatchObserver {
  batchStarted?: (rows: number, requests: number) => void
  /** A run (one batch) ended; `ms` is the model instance's own time for it. */
  runFinished?: (ms: number) => void
  queueDepth?: (depth: number) => void
  /** A merged run showed that the model's outputs do not follow the batch; merging stops. */
  mergingStopped?: (reason: string) => void
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
  readonly cancellation?: Cancellation
  readonly lane: Lane
  /** Runs alone: its merged batch failed, and it is retried on its own so one bad request fails only itself. */
  solo?: boolean
  /** Already re-run once, alone, after its model instance died under it. */
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
  /** Batch lines: served only when `queue` is empty, so online requests never wait behind them. */
  private batchQueue: Job[] = []
  private timer: NodeJS.Timeout | undefined
  private pumpScheduled = false
  private reserved = 0
  private merging: boolean

  constructor (private readonly pool: InstancePool, private readonly policy: BatchPolicy, private readonly observer: BatchObserver = {}) {
    this.merging = policy.merge
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
      const { cancellation } = options
      const lane = options.lane ?? 'online'
      const job: Job = { inputs, outputs, rows, key, lane, enqueuedAt: performance.now(), resolve, reject, ...(options.onStart && { onStart: options.onStart }), ...(cancellation !== undefined && { cancellation }) }
      if (cancellation !== undefined) {
        if (cancellation.cancelled !== undefined) return reject(cancellation.cancelled)
        cancellation.onCancel((reason) => this.remove(job, reason))
      }
      if (lane === 'batch') {
        this.batchQueue.push(job)
        this.schedulePump()
        return
      }
      this.queue.push(job)
      this.schedulePump()
      this.observer.queueDepth?.(this.queue.length)
    })
  }

  /**
   * Which queued requests can still finish by `deadline` (epoch ms) and which cannot,
   * judged from the observed run times, the instances (free or busy until their run's
   * expected end) and the queue ahead of each request, batched as it would be. Without
   * any observed run every request is expected to fit: whatever is still unfinished at
   * the deadline is handed off then.
   */
  planUntil (deadline: number): DrainPlan {
    const now = performance.now()
    const horizon = now + (deadline - Date.now())
    const freeAt = this.pool.freeAt(now)
    const late: Cancellation[] = []
    let kept = 0
    const runMs = this.pool.expectedRunMs(1, now)
    let i = 0
    while (i < this.queue.length) {
      const batch = this.plannedBatch(i)
      i += batch.length
      const rows = batch.reduce((sum, job) => sum + job.rows, 0)
      const estimate = this.pool.expectedRunMs(rows, now)
      let fits = true
      if (estimate !== undefined && freeAt.length > 0) {
        let soonest = 0
        for (let k = 1; k < freeAt.length; k++) if (freeAt[k] < freeAt[soonest]) soonest = k
        const end = Math.max(now, freeAt[soonest]) + estimate
        freeAt[soonest] = end
        fits = end <= horizon
      }
      for (const job of batch) {
        if (fits) kept++
        else if (job.cancellation !== undefined) late.push(job.cancellation)
      }
    }
    return { queued: this.queue.length, kept, late, runMs, instances: freeAt.length }
  }

  /** The queued jobs from `start` that one run would take, as collect() would group them. */
  private plannedBatch (start: number): Job[] {
    const head = this.queue[start]
    if (!this.merging || head.solo === true) return [head]
    const batch = [head]
    let rows = head.rows
    for (let i = start + 1; i < this.queue.length; i++) {
      const job = this.queue[i]
      if (job.key !== head.key || job.solo === true || rows + job.rows > this.policy.maxBatchSize) break
      batch.push(job)
      rows += job.rows
    }
    return batch
  }

  private remove (job: Job, reason: Error): void {
    const queue = this.laneQueue(job.lane)
    const index = queue.indexOf(job)
    if (index === -1) return
    queue.splice(index, 1)
    if (job.lane === 'online') this.observer.queueDepth?.(this.queue.length)
    job.reject(reason)
  }

  private laneQueue (lane: Lane): Job[] {
    return lane === 'batch' ? this.batchQueue : this.queue
  }

  /** Puts jobs back at the head of their lane, to run again (alone). */
  private requeue (jobs: Job[]): void {
    for (const job of [...jobs].reverse()) this.laneQueue(job.lane).unshift(job)
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
      const batch = this.merging ? this.collect() : [this.queue.shift() as Job]
      if (batch === undefined) return
      this.dispatch(batch)
    }
    // Batch lines take only what online traffic leaves: an instance idle with no online request queued.
    while (this.queue.length === 0 && this.batchQueue.length > 0 && this.pool.idleCount > 0) {
      this.dispatch(this.merging ? this.collectBatchLines() : [this.batchQueue.shift() as Job])
    }
  }

  /** The next run of batch lines: as many as merge with the first, without waiting for more. */
  private collectBatchLines (): Job[] {
    const head = this.batchQueue[0]
    if (head.solo === true) return [this.batchQueue.shift() as Job]
    const picked: Job[] = [head]
    let rows = head.rows
    for (let i = 1; i < this.batchQueue.length && rows < this.policy.maxBatchSize; i++) {
      const job = this.batchQueue[i]
      if (job.key === head.key && job.solo !== true && rows + job.rows <= this.policy.maxBatchSize) {
        picked.push(job)
        rows += job.rows
      }
    }
    const chosen = new Set(picked)
    this.batchQueue = this.batchQueue.filter((job) => !chosen.has(job))
    return picked
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
    // A thread may take a lone request's buffers over; a process gets a copy of the bytes anyway.
    const { inputs, transfer } = batch.length > 1 ? concatenate(batch, rows) : this.pool.stoppable ? { inputs: batch[0].inputs, transfer: [] } : ownInputs(batch[0].inputs)
    const outputs = requestedOutputs(batch)
    this.pool.run(inputs, outputs, transfer, rows).then(
      (result) => {
        this.observer.runFinished?.(result.inferenceMs)
        const misshaped = batch.length > 1 && result.outputs.find((t) => t.shape[0] !== rows)
        if (misshaped) {
          // The model's first output dimension is no batch after all: run these (and everything after) one by one.
          this.merging = false
          this.observer.mergingStopped?.(`output '${misshaped.name}' has ${misshaped.shape.length === 0 ? 'no first dimension' : `${misshaped.shape[0]} rows`} for a batch of ${rows} rows`)
          for (const job of batch) job.solo = true
          this.requeue(batch)
          this.pump()
          return
        }
        settle(batch, result, started, rows)
      },
      (error: Error) => {
        if (batch.length > 1) {
          // A merged batch failed or its instance died: run its requests one by one, so a bad one fails only itself.
          for (const job of batch) job.solo = true
          this.requeue(batch)
          this.pump()
          return
        }
        const [job] = batch
        if (!(error instanceof InstanceCrashed)) return job.reject(error)
        if (job.retried === true) {
          // The instance died twice running this request alone: the request itself kills it.
          return job.reject(new RunError(`the model instance crashed twice running this request alone (${error.message})`))
        }
        // Maybe the instance's fault: once more, alone, on a live instance. A request whose
        // buffers went to a dead thread (detached, empty) cannot be resent: the caller decides.
        if (!job.inputs.every((t) => t.data.length === elementCount(t.shape))) return job.reject(error)
        job.retried = true
        job.solo = true
        this.requeue([job])
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
    // Strings are copied to the worker (structured clone); there is no buffer to move.
    if (Array.isArray(data)) return tensor
    // An empty tensor has nothing to move, and its buffer may be one a dead worker detached.
    if (data.length === 0) return { ...tensor, data: allocate(tensor.datatype, 0) }
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
    // From the shape, not the data: a request may bring zero rows.
    const shape = [rows, ...first.shape.slice(1)]
    if (first.datatype === 'BYTES') {
      const strings = batch.flatMap((job) => job.inputs[index].data as string[])
      return { name: first.name, datatype: first.datatype, shape, data: strings }
    }
    const total = elementCount(first.shape.slice(1)) * rows
    const merged = allocate(first.datatype, total) as NumericData
    let offset = 0
    for (const job of batch) {
      const part = job.inputs[index].data
      ;(merged as Uint8Array).set(part as Uint8Array, offset)
      offset += part.length
    }
    transfer.push(merged.buffer as ArrayBuffer)
    return { name: first.name, datatype: first.datatype, shape, data: merged }
  })
  return { inputs, transfer }
}

function settle (batch: Job[], result: RunResult, started: number, rows: number): void {
  let offset = 0
  for (const job of batch) {
    const outputs: Tensor[] = []
    for (const tensor of result.outputs) {
      if (job.outputs !== undefined && !job.outputs.includes(tensor.name)) continue
      outputs.push(batch.length === 1 ? tensor : sliceRows(tensor, offset, job.rows))
    }
    offset += job.rows
    job.resolve({ outputs, timing: { queueMs: started - job.enqueuedAt, inferenceMs: result.inferenceMs } })
  }
}

function sliceRows (tensor: Tensor, firstRow: number, count: number): Tensor {
  const perRow = elementCount(tensor.shape.slice(1))
  const [start, end] = [firstRow * perRow, (firstRow + count) * perRow]
  const data = Array.isArray(tensor.data) ? tensor.data.slice(start, end) : tensor.data.subarray(start, end) as TensorData
  return { ...tensor, shape: [count, ...tensor.shape.slice(1)], data }
}
