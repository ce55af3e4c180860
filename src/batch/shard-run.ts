import type { Logger } from 'pino'
import { encodeResponseJson } from '../http/v2-response.js'
import { Cancellation } from '../inference/cancellation.js'
import type { ModelRegistry, ServedModel } from '../inference/model-registry.js'
import type { Metrics } from '../metrics.js'
import { decodeLineBody, lineRanges, parseLine } from './input-file.js'
import { storageNames, type BatchRecord } from './objects.js'
import { answeredLine, encodePart, type PartRecord } from './output-lines.js'
import type { BatchStorage } from './storage/storage.js'
import type { BatchStore, ShardRange, Task } from './store.js'

/** Limits the batch lines one instance has queued or running, across its shards. */
export class Slots {
  private free: number
  private readonly waiting: Array<() => void> = []
  constructor (size: number) {
    this.free = size
  }

  async take (): Promise<void> {
    if (this.free > 0) {
      this.free--
      return
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve))
  }

  give (): void {
    const next = this.waiting.shift()
    if (next !== undefined) next()
    else this.free++
  }
}

export interface ShardRunDeps {
  readonly store: BatchStore
  readonly storage: BatchStorage
  readonly models: ModelRegistry
  readonly slots: Slots
  readonly commitIntervalMs: number
  readonly log: Logger
  readonly metrics: Metrics
}

export interface ShardClaim {
  readonly task: Task
  readonly epoch: number
  readonly range: ShardRange
  readonly done: readonly boolean[]
}

/** Why a run stopped before its shard was complete. */
type StopReason = 'stale' | 'sealed' | 'hand_back' | 'error'

class Stopped extends Error {
  override readonly name = 'Stopped'
}

/**
 * Runs the lines of one claimed shard that are not yet committed, through the model's
 * batch lane, and commits them in parts: each part is written to storage under a name of
 * its own (shard, epoch, sequence) and then recorded with the claim's epoch. A commit
 * refused as stale (the shard was taken over) or sealed (the batch is being finalized)
 * ends the run; its uncommitted results are dropped.
 */
export class ShardRun {
  private readonly cancellation = new Cancellation()
  private stopReason: StopReason | undefined
  private pending: PartRecord[] = []
  private sequence = 0
  private committing: Promise<void> = Promise.resolve()
  private complete = false
  /** Lines this run recorded first. */
  private won = 0
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly deps: ShardRunDeps, private readonly claim: ShardClaim, private readonly record: BatchRecord) {}

  get task (): Task {
    return this.claim.task
  }

  get epoch (): number {
    return this.claim.epoch
  }

  /** Lines of the shard neither committed before this claim nor by it: what a hand-back leaves to the next holder. */
  get unfinished (): number {
    return this.claim.done.filter((done) => !done).length - this.won
  }

  /** Stops taking lines; lines queued in the batch lane leave it, lines running finish and are committed (unless stale). */
  stop (reason: StopReason): void {
    this.stopReason ??= reason
    this.cancellation.cancel(new Stopped(reason))
  }

  /** Runs the shard; resolves with how it ended: `complete`, or why it stopped. */
  async run (): Promise<'complete' | StopReason> {
    const { storage, models, slots, log } = this.deps
    const { range, done, task } = this.claim
    const model = models.resolve(this.record.model, this.record.version)
    const bytes = await storage.getRange(storageNames.file(this.record.input_file_id), range.start, range.end)
    const lines = lineRanges(bytes)
    if (lines.length !== range.count) throw new Error(`shard ${task.shard} of ${task.batchId}: expected ${range.count} lines in bytes ${range.start}-${range.end}, found ${lines.length}`)
    this.timer = setInterval(() => { void this.flush() }, this.deps.commitIntervalMs)
    const running: Array<Promise<void>> = []
    try {
      for (let i = 0; i < lines.length && this.stopReason === undefined; i++) {
        if (done[i]) continue
        await slots.take()
        if (this.stopReason !== undefined) {
          slots.give()
          break
        }
        const text = bytes.toString('utf8', lines[i][0], lines[i][1])
        running.push(this.runLine(model, range.firstLine + i, text).finally(() => slots.give()))
      }
      await Promise.all(running)
    } finally {
      clearInterval(this.timer)
    }
    // What finished is committed, also at a hand-back: only a stale or sealed claim loses it.
    await this.flush()
    await this.committing
    if (this.complete) return 'complete'
    if (this.stopReason === undefined) {
      log.warn({ batchId: task.batchId, shard: task.shard }, 'batch shard ran every line but is not complete; leaving it to be claimed again')
      return 'error'
    }
    return this.stopReason
  }

  private async runLine (model: ServedModel, index: number, text: string): Promise<void> {
    const batchId = this.record.id
    const parsed = parseLine(text, this.record.endpoint)
    if ('code' in parsed) {
      // Validated before the batch started; a file changed since is answered per line.
      this.pending.push({ index, ok: false, text: answeredLine(batchId, index, '', 400, Buffer.from(JSON.stringify({ error: parsed.message }))) })
      return
    }
    let result: PartRecord
    try {
      const decoded = decodeLineBody(parsed.body, model)
      const { outputs } = await model.batcher.submit(decoded.inputs, decoded.outputs, { lane: 'batch', cancellation: this.cancellation })
      const body = encodeResponseJson({ model: model.name, version: model.version, ...(decoded.clientId !== undefined && { clientId: decoded.clientId }), outputs })
      result = { index, ok: true, text: answeredLine(batchId, index, parsed.customId, 200, body) }
    } catch (error) {
      if (error instanceof Stopped) return
      const status = (error as { statusCode?: number }).statusCode
      const code = status !== undefined && status >= 400 && status < 500 ? status : 500
      const message = code === 500 ? `inference failed: ${(error as Error).message}` : (error as Error).message
      result = { index, ok: false, text: answeredLine(batchId, index, parsed.customId, code, Buffer.from(JSON.stringify({ error: message }))) }
    }
    this.pending.push(result)
  }

  /** Commits what finished since the last part; parts of one run are committed one after another. */
  private flush (): Promise<void> {
    this.committing = this.committing.then(() => this.commitPending())
    return this.committing
  }

  private async commitPending (): Promise<void> {
    if (this.pending.length === 0 || this.stopReason === 'stale' || this.stopReason === 'sealed') return
    const { store, storage, metrics, log } = this.deps
    const { task, epoch } = this.claim
    const records = this.pending
    this.pending = []
    const part = storageNames.part(task.batchId, task.shard, epoch, ++this.sequence)
    try {
      await storage.put(part, encodePart(records))
      const result = await store.commit(task, epoch, part, records.map(({ index, ok }) => ({ index, ok })))
      if (result.kind !== 'ok') {
        // No reader will ever look at a part that was not recorded.
        await storage.delete(part).catch(() => {})
        metrics.batchLines.inc({ outcome: 'stale' }, records.length)
        if (result.kind === 'stale') metrics.batchShards.inc({ outcome: 'stale' })
        log.warn({ batchId: task.batchId, shard: task.shard, epoch, lines: records.length, reason: result.kind }, result.kind === 'stale' ? 'batch shard was taken over: its results here are dropped' : 'batch is being finalized: results not committed in time are dropped')
        this.stop(result.kind)
        return
      }
      this.won += result.won
      metrics.batchLines.inc({ outcome: 'committed' }, result.won)
      if (result.won < records.length) metrics.batchLines.inc({ outcome: 'stale' }, records.length - result.won)
      if (result.shardComplete) {
        this.complete = true
        metrics.batchShards.inc({ outcome: 'committed' })
      }
    } catch (error) {
      // Storage or Redis failed: the lines stay uncommitted, and run again on the next claim.
      log.warn({ batchId: task.batchId, shard: task.shard, err: error }, 'batch part could not be committed; its lines run again on the shard\'s next claim')
      this.stop('error')
    }
  }
}
