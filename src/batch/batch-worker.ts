import type { Logger } from 'pino'
import type { BatchSettings } from '../config.js'
import type { ModelRegistry } from '../inference/model-registry.js'
import type { Metrics } from '../metrics.js'
import { finalizeBatch } from './finalize-batch.js'
import { BATCH_STATUSES, nowSeconds } from './objects.js'
import { ShardRun, Slots } from './shard-run.js'
import type { BatchStorage } from './storage/storage.js'
import type { BatchStore, Task } from './store.js'
import { validateBatch } from './validate-batch.js'

export interface BatchWorkerDeps {
  readonly store: BatchStore
  readonly storage: BatchStorage
  readonly models: ModelRegistry
  readonly settings: BatchSettings
  /** A claim not renewed for this long belongs to a dead or stalled instance and may be taken over. */
  readonly claimIdleMs: number
  /** Whether this instance takes batch work now (ready, not draining). */
  readonly canTakeWork: () => boolean
  readonly log: Logger
  readonly metrics: Metrics
}

interface Held {
  readonly task: Task
  readonly epoch: number
  /** Set for shards: stopped when the claim is lost or at a drain. */
  readonly run?: ShardRun
  readonly done: Promise<void>
}

const POLL_MS = 250
const ERROR_WAIT_MS = 500
const SWEEP_MS = 2000

/**
 * Takes batch work from the store's queue: validations, shards and finalizations, up to
 * BATCH_SHARDS_PER_INSTANCE at once. Keeps its claims alive while it holds them (a claim
 * found taken over stops its run), expires batches past their completion window, and at
 * a drain hands its shards back.
 */
export class BatchWorker {
  private readonly held = new Map<string, Held>()
  private readonly slots: Slots
  private loop: Promise<void> | undefined
  private stopped = false
  private handingBack = false
  private renewTimer: NodeJS.Timeout | undefined
  private sweepTimer: NodeJS.Timeout | undefined
  private wake: (() => void) | undefined

  constructor (private readonly deps: BatchWorkerDeps) {
    this.slots = new Slots(deps.settings.concurrency)
  }

  start (): void {
    if (this.loop !== undefined) return
    this.loop = this.run()
    this.renewTimer = setInterval(() => { void this.renew() }, Math.max(50, Math.floor(this.deps.claimIdleMs / 3)))
    this.sweepTimer = setInterval(() => { void this.sweep() }, SWEEP_MS)
    void this.sweep()
  }

  /** Looks for work now rather than at the next poll (a batch was just created or cancelled here). */
  poke (): void {
    this.wake?.()
  }

  /**
   * At a notice: claims nothing more; each shard running here stops taking lines, commits
   * what finished and goes back to the queue at once, without using an attempt.
   * Validations and finalizations in progress finish (they are short).
   */
  async handBack (): Promise<void> {
    this.handingBack = true
    this.wake?.()
    for (const held of this.held.values()) held.run?.stop('hand_back')
    await Promise.all([...this.held.values()].map((held) => held.done))
  }

  /** Stops the loop and the timers; work still held is left to lease expiry. */
  async stop (): Promise<void> {
    this.stopped = true
    this.wake?.()
    clearInterval(this.renewTimer)
    clearInterval(this.sweepTimer)
    for (const held of this.held.values()) held.run?.stop('hand_back')
    await this.loop
  }

  private async run (): Promise<void> {
    const { store, settings, log, claimIdleMs } = this.deps
    while (!this.stopped) {
      const free = settings.shardsPerInstance - this.held.size
      if (this.handingBack || free <= 0 || !this.deps.canTakeWork() || store.unavailableReason() !== undefined) {
        await this.sleep(POLL_MS)
        continue
      }
      try {
        const tasks = await store.readTasks(free, claimIdleMs)
        for (const task of tasks) await this.take(task)
        if (tasks.length === 0) await this.sleep(POLL_MS)
      } catch (error) {
        if (this.stopped) break
        log.warn({ err: error }, 'reading batch work failed')
        await this.sleep(ERROR_WAIT_MS)
      }
    }
  }

  private async take (task: Task): Promise<void> {
    const { store, settings, metrics, log } = this.deps
    // A task read but not claimed stays with this instance until a peer takes it after claimIdleMs.
    if (this.stopped || this.handingBack || !this.deps.canTakeWork()) return
    const claim = await store.claim(task, settings.maxAttempts)
    if (claim.kind === 'skip') return
    if (claim.kind === 'exhausted') {
      log.error({ batchId: task.batchId, shard: task.shard, attempts: settings.maxAttempts }, 'batch shard used up its attempts; its unfinished lines go to the error file')
      return
    }
    const logged = { batchId: task.batchId, shard: task.shard, epoch: claim.epoch }
    if (claim.kind === 'validate') {
      this.hold(task, claim.epoch, undefined, async () => {
        const outcome = await validateBatch(this.deps, task, claim.epoch)
        log.info({ ...logged, outcome }, `batch validation: ${outcome}`)
        this.wake?.()
      })
      return
    }
    if (claim.kind === 'final') {
      this.hold(task, claim.epoch, undefined, async () => {
        log.info(logged, 'finalizing batch: assembling its output and error files')
        await finalizeBatch(this.deps, task)
      })
      return
    }
    const remaining = claim.done.filter((done) => !done).length
    if (claim.takenOver) {
      metrics.batchShards.inc({ outcome: 'taken_over' })
      metrics.batchLines.inc({ outcome: 'taken_over' }, remaining)
      log.warn({ ...logged, lines: remaining }, 'took over a batch shard whose holder went silent')
    }
    const record = await store.getBatch(task.batchId)
    if (record === undefined) return
    const run = new ShardRun({ ...this.deps, slots: this.slots, commitIntervalMs: settings.commitIntervalMs }, { task, epoch: claim.epoch, range: claim.range, done: claim.done }, record)
    this.hold(task, claim.epoch, run, async () => {
      const ending = await run.run()
      if (ending === 'hand_back') {
        const handedBack = await store.handBack(task, claim.epoch)
        if (handedBack) {
          metrics.batchShards.inc({ outcome: 'handed_back' })
          metrics.batchLines.inc({ outcome: 'handed_back' }, run.unfinished)
          log.info({ ...logged, lines: run.unfinished }, 'handed a batch shard back')
        }
      }
      if (ending === 'complete') log.debug(logged, 'batch shard complete')
    })
    log.info({ ...logged, lines: remaining, handedBack: claim.handedBack }, 'claimed a batch shard')
  }

  private hold (task: Task, epoch: number, run: ShardRun | undefined, work: () => Promise<void>): void {
    const done = work().catch((error: Error) => {
      // Left claimed: after claimIdleMs a peer (or this instance) claims it again, as another attempt.
      this.deps.log.warn({ batchId: task.batchId, kind: task.kind, shard: task.shard, err: error }, 'batch task failed; it is claimed again after the lease')
    }).finally(() => {
      this.held.delete(task.entryId)
      this.wake?.()
    })
    this.held.set(task.entryId, { task, epoch, ...(run !== undefined && { run }), done })
  }

  private async renew (): Promise<void> {
    const { store, log } = this.deps
    if (store.unavailableReason() !== undefined) return
    await Promise.all([...this.held.values()].map(async (held) => {
      try {
        if (await store.renew(held.task, held.epoch)) return
        log.warn({ batchId: held.task.batchId, kind: held.task.kind, shard: held.task.shard, epoch: held.epoch }, 'batch claim was taken over; stopping it here')
        if (held.run !== undefined) {
          held.run.stop('stale')
          this.deps.metrics.batchShards.inc({ outcome: 'stale' })
        }
      } catch {
        // The next tick tries again; a claim not renewed within claimIdleMs may be run twice, which the epochs fence.
      }
    }))
  }

  /** Expires batches past their completion window and refreshes the fleet-wide status gauge. */
  private async sweep (): Promise<void> {
    const { store, metrics, log } = this.deps
    if (store.unavailableReason() !== undefined) return
    try {
      const now = nowSeconds()
      for (const id of await store.activeBatches()) {
        const record = await store.getBatch(id)
        if (record === undefined || record.status !== 'in_progress' || now < Number(record.expires_at)) continue
        const { applied } = await store.transition(id, { from: ['in_progress'], fields: { ending: 'expired' }, finalize: true })
        if (applied) log.warn({ batchId: id }, 'batch expired (completion_window): its unrun lines go to the error file')
      }
      const counts = await store.statusCounts()
      for (const status of BATCH_STATUSES) metrics.batches.set({ status }, Math.max(0, counts[status] ?? 0))
    } catch (error) {
      log.debug({ err: error }, 'batch sweep failed')
    }
  }

  private sleep (ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done (): void {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
  }
}
