import { fileRecord, fileObject, TERMINAL_STATUSES, type BatchRecord, type FileObject } from './objects.js'
import type { BatchPlan, BatchStore, Claim, CommitResult, CommittedLine, FinalSnapshot, ShardRange, Task, TaskKind, Transition } from './store.js'

interface ShardState {
  readonly range: ShardRange
  epoch: number
  holder: string
  attempts: number
  handedBack: boolean
  done: number
  givenUp: boolean
}

interface MemoryBatch {
  record: Record<string, string>
  shards: ShardState[]
  done: Set<number>
  parts: Map<string, number[]>
}

/**
 * Batches in this process, without REDIS_URL: the same states, claims and fencing as the
 * Redis store, for one instance; nothing survives the process.
 */
export class MemoryBatchStore implements BatchStore {
  readonly kind = 'memory'
  private readonly files = new Map<string, Record<string, string>>()
  private readonly batches = new Map<string, MemoryBatch>()
  private readonly queue: Task[] = []
  /** Entry → when its holder last claimed or renewed it: like a stream entry's idle time. */
  private readonly held = new Map<string, number>()
  private nextEntry = 0

  constructor (private readonly instanceId: string) {}

  unavailableReason (): string | undefined {
    return undefined
  }

  async putFile (file: FileObject): Promise<void> {
    this.files.set(file.id, fileRecord(file))
  }

  async getFile (id: string): Promise<FileObject | undefined> {
    const record = this.files.get(id)
    return record === undefined ? undefined : fileObject(record)
  }

  async listFiles (): Promise<FileObject[]> {
    return [...this.files.values()].map(fileObject).reverse()
  }

  async deleteFile (id: string): Promise<boolean> {
    return this.files.delete(id)
  }

  async createBatch (record: BatchRecord): Promise<void> {
    if (this.batches.has(record.id)) return
    this.batches.set(record.id, { record: { ...record, status: 'validating' }, shards: [], done: new Set(), parts: new Map() })
    this.enqueue('validate', record.id, 0)
  }

  async getBatch (id: string): Promise<BatchRecord | undefined> {
    const batch = this.batches.get(id)
    return batch === undefined ? undefined : { ...batch.record }
  }

  async listBatches (after: string | undefined, limit: number): Promise<{ records: BatchRecord[], hasMore: boolean }> {
    const ids = [...this.batches.keys()].reverse()
    const start = after === undefined ? 0 : ids.indexOf(after) + 1
    if (after !== undefined && start === 0) return { records: [], hasMore: false }
    const page = ids.slice(start, start + limit)
    return { records: page.map((id) => ({ ...(this.batches.get(id) as MemoryBatch).record })), hasMore: ids.length > start + limit }
  }

  async transition (id: string, change: Transition): Promise<{ applied: boolean, status: string | undefined }> {
    const batch = this.batches.get(id)
    if (batch === undefined) return { applied: false, status: undefined }
    const { record } = batch
    if (!change.from.includes(record.status)) return { applied: false, status: record.status }
    if (change.fence !== undefined && record[`${change.fence.field}_epoch`] !== String(change.fence.epoch)) return { applied: false, status: record.status }
    Object.assign(record, change.fields ?? {})
    if (change.to !== undefined) record.status = change.to
    if (change.finalize === true) this.queueFinal(batch)
    if (change.done !== undefined) this.ack(change.done)
    return { applied: true, status: record.status }
  }

  async startBatch (task: Task, epoch: number, plan: BatchPlan, now: number): Promise<boolean> {
    const batch = this.batches.get(task.batchId)
    if (batch === undefined || batch.record.status !== 'validating' || batch.record.validate_epoch !== String(epoch)) return false
    Object.assign(batch.record, { status: 'in_progress', in_progress_at: String(now), model: plan.model, version: plan.version, total: String(plan.total), shards: String(plan.shards.length), shards_done: '0', completed: '0', failed: '0' })
    batch.shards = plan.shards.map((range) => ({ range, epoch: 0, holder: '', attempts: 0, handedBack: false, done: 0, givenUp: false }))
    plan.shards.forEach((_range, index) => this.enqueue('shard', task.batchId, index))
    this.ack(task)
    if (plan.shards.length === 0) this.finishShards(batch, now)
    return true
  }

  async readTasks (count: number, idleMs: number): Promise<Task[]> {
    const now = Date.now()
    const tasks = this.queue.filter((task) => (this.held.get(task.entryId) ?? -Infinity) < now - idleMs).slice(0, count)
    for (const task of tasks) this.held.set(task.entryId, now)
    return tasks
  }

  async claim (task: Task, maxAttempts: number): Promise<Claim> {
    const batch = this.batches.get(task.batchId)
    const skip = (): Claim => { this.ack(task); return { kind: 'skip' } }
    if (batch === undefined) return skip()
    const { record } = batch
    if (task.kind === 'validate') {
      if (record.status !== 'validating') return skip()
      record.validate_epoch = String(Number(record.validate_epoch ?? 0) + 1)
      return { kind: 'validate', epoch: Number(record.validate_epoch) }
    }
    if (task.kind === 'final') {
      if (TERMINAL_STATUSES.includes(record.status as never)) return skip()
      record.sealed = '1'
      record.final_epoch = String(Number(record.final_epoch ?? 0) + 1)
      return { kind: 'final', epoch: Number(record.final_epoch) }
    }
    const shard = batch.shards[task.shard]
    if (record.status !== 'in_progress' || record.sealed === '1' || shard === undefined || shard.givenUp || shard.done >= shard.range.count) return skip()
    const handedBack = shard.handedBack
    const takenOver = !handedBack && shard.holder !== ''
    if (handedBack) {
      shard.handedBack = false
    } else if (++shard.attempts > maxAttempts) {
      shard.givenUp = true
      shard.holder = ''
      shard.epoch++
      this.ack(task)
      this.shardFinished(batch)
      return { kind: 'exhausted' }
    }
    shard.epoch++
    shard.holder = this.instanceId
    const done = Array.from({ length: shard.range.count }, (_, i) => batch.done.has(shard.range.firstLine + i))
    return { kind: 'shard', epoch: shard.epoch, range: shard.range, done, takenOver, handedBack }
  }

  async renew (task: Task, epoch: number): Promise<boolean> {
    const batch = this.batches.get(task.batchId)
    if (batch === undefined) return false
    const current = task.kind === 'shard' ? batch.shards[task.shard]?.epoch === epoch : batch.record[`${task.kind}_epoch`] === String(epoch)
    if (current && this.held.has(task.entryId)) this.held.set(task.entryId, Date.now())
    return current
  }

  async commit (task: Task, epoch: number, part: string, lines: readonly CommittedLine[]): Promise<CommitResult> {
    const batch = this.batches.get(task.batchId)
    if (batch === undefined || batch.record.sealed === '1') return { kind: 'sealed' }
    const shard = batch.shards[task.shard]
    if (shard.epoch !== epoch) return { kind: 'stale' }
    const won: number[] = []
    let completed = 0
    let failed = 0
    for (const line of lines) {
      if (batch.done.has(line.index)) continue
      batch.done.add(line.index)
      won.push(line.index)
      if (line.ok) completed++
      else failed++
    }
    if (won.length > 0) batch.parts.set(part, won)
    batch.record.completed = String(Number(batch.record.completed) + completed)
    batch.record.failed = String(Number(batch.record.failed) + failed)
    shard.done += won.length
    if (shard.done < shard.range.count) return { kind: 'ok', won: won.length, shardComplete: false }
    shard.holder = ''
    this.ack(task)
    this.shardFinished(batch)
    return { kind: 'ok', won: won.length, shardComplete: true }
  }

  async handBack (task: Task, epoch: number): Promise<boolean> {
    const shard = this.batches.get(task.batchId)?.shards[task.shard]
    if (shard === undefined || shard.epoch !== epoch) return false
    shard.epoch++
    shard.handedBack = true
    shard.holder = ''
    this.ack(task)
    this.enqueue('shard', task.batchId, task.shard)
    return true
  }

  async finalSnapshot (batchId: string): Promise<FinalSnapshot> {
    const batch = this.batches.get(batchId) as MemoryBatch
    return { record: { ...batch.record }, shards: batch.shards.map((s) => s.range), parts: new Map(batch.parts) }
  }

  async release (task: Task): Promise<void> {
    this.ack(task)
  }

  async statusCounts (): Promise<Record<string, number>> {
    const counts: Record<string, number> = {}
    for (const { record } of this.batches.values()) counts[record.status] = (counts[record.status] ?? 0) + 1
    return counts
  }

  async activeBatches (): Promise<string[]> {
    return [...this.batches.values()].filter(({ record }) => !TERMINAL_STATUSES.includes(record.status as never)).map(({ record }) => record.id)
  }

  async close (): Promise<void> {}

  private enqueue (kind: TaskKind, batchId: string, shard: number): void {
    this.queue.push({ entryId: String(++this.nextEntry), kind, batchId, shard })
  }

  private ack (task: Task): void {
    const index = this.queue.findIndex((queued) => queued.entryId === task.entryId)
    if (index !== -1) this.queue.splice(index, 1)
    this.held.delete(task.entryId)
  }

  private shardFinished (batch: MemoryBatch): void {
    batch.record.shards_done = String(Number(batch.record.shards_done) + 1)
    if (Number(batch.record.shards_done) >= batch.shards.length && batch.record.status === 'in_progress') this.finishShards(batch, Math.floor(Date.now() / 1000))
  }

  private finishShards (batch: MemoryBatch, now: number): void {
    Object.assign(batch.record, { status: 'finalizing', finalizing_at: String(now), ending: 'completed' })
    this.queueFinal(batch)
  }

  private queueFinal (batch: MemoryBatch): void {
    if (batch.record.final_queued === '1') return
    batch.record.final_queued = '1'
    this.enqueue('final', batch.record.id, 0)
  }
}
