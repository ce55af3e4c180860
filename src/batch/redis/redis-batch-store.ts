import { createGroupWithTtl, type RedisClient } from '../../journal/redis/clients.js'
import type { RedisConnection } from '../../journal/redis/connection.js'
import { fileObject, fileRecord, type BatchRecord, type FileObject } from '../objects.js'
import { decodeRange, encodeRange, type BatchPlan, type BatchStore, type Claim, type CommitResult, type CommittedLine, type FinalSnapshot, type ShardRange, type Task, type TaskKind, type Transition } from '../store.js'
import { BATCH_GROUP, batchKeys, type BatchKeys } from './keys.js'
import { commandName, defineBatchScripts } from './scripts.js'

export interface RedisBatchStoreOptions {
  readonly namespace: string
  readonly retentionMs: number
}

type Reply = Array<Buffer | number | string>

/**
 * Batches in Redis, shared by the fleet: every state change is one Lua script on the
 * batch's keys, claims are entries of one Streams consumer group, and a claim's epoch
 * fences what its holder may still commit.
 */
export class RedisBatchStore implements BatchStore {
  readonly kind = 'redis'
  private readonly keys: BatchKeys
  private groupReady = false

  constructor (private readonly redis: RedisConnection, private readonly options: RedisBatchStoreOptions) {
    this.keys = batchKeys(options.namespace)
    defineBatchScripts(redis.client)
  }

  private get client (): RedisClient {
    return this.redis.client
  }

  unavailableReason (): string | undefined {
    return this.redis.unavailableReason()
  }

  private script<T> (name: string, ...args: Array<string | number>): Promise<T> {
    const call = (this.client as unknown as Record<string, (...a: Array<string | number>) => Promise<T>>)[commandName(name)]
    return call.apply(this.client, args)
  }

  private timed<T> (op: string, run: () => Promise<T>): Promise<T> {
    return this.redis.timed(`batch_${op}`, run)
  }

  async putFile (file: FileObject): Promise<void> {
    const { retentionMs } = this.options
    await this.timed('file', () => this.client.multi()
      .hset(this.keys.file(file.id), fileRecord(file)).pexpire(this.keys.file(file.id), retentionMs)
      .zadd(this.keys.files, file.created_at * 1000, file.id).pexpire(this.keys.files, retentionMs)
      .exec())
  }

  async getFile (id: string): Promise<FileObject | undefined> {
    const record = await this.timed('file', () => this.client.hgetall(this.keys.file(id)))
    return record.id === undefined ? undefined : fileObject(record)
  }

  async listFiles (): Promise<FileObject[]> {
    const ids = await this.timed('file', () => this.client.zrevrange(this.keys.files, 0, -1))
    const pipeline = this.client.pipeline()
    for (const id of ids) pipeline.hgetall(this.keys.file(id))
    const replies = await this.timed('file', () => pipeline.exec()) ?? []
    return replies.flatMap(([, record]) => ((record as Record<string, string>).id === undefined ? [] : [fileObject(record as Record<string, string>)]))
  }

  async deleteFile (id: string): Promise<boolean> {
    const [[, removed]] = await this.timed('file', () => this.client.multi().del(this.keys.file(id)).zrem(this.keys.files, id).exec()) as [[null, number]]
    return removed === 1
  }

  async createBatch (record: BatchRecord): Promise<void> {
    await this.ensureGroup()
    const k = this.keys
    await this.timed('create', () => this.script('create-batch', k.batch(record.id), k.batches, k.work, k.statusCounts, k.active,
      record.id, Date.now(), this.options.retentionMs, ...Object.entries(record).flat()))
  }

  async getBatch (id: string): Promise<BatchRecord | undefined> {
    const record = await this.timed('get', () => this.client.hgetall(this.keys.batch(id)))
    return record.id === undefined ? undefined : record
  }

  async listBatches (after: string | undefined, limit: number): Promise<{ records: BatchRecord[], hasMore: boolean }> {
    let start = 0
    if (after !== undefined) {
      const rank = await this.timed('list', () => this.client.zrevrank(this.keys.batches, after))
      if (rank === null) return { records: [], hasMore: false }
      start = rank + 1
    }
    const ids = await this.timed('list', () => this.client.zrevrange(this.keys.batches, start, start + limit))
    const pipeline = this.client.pipeline()
    for (const id of ids.slice(0, limit)) pipeline.hgetall(this.keys.batch(id))
    const replies = await this.timed('list', () => pipeline.exec()) ?? []
    const records = replies.flatMap(([, record]) => ((record as BatchRecord).id === undefined ? [] : [record as BatchRecord]))
    return { records, hasMore: ids.length > limit }
  }

  async transition (id: string, change: Transition): Promise<{ applied: boolean, status: string | undefined }> {
    await this.ensureGroup()
    const k = this.keys
    const reply = await this.timed('transition', () => this.script<Reply>('transition', k.batch(id), k.statusCounts, k.work, k.active,
      change.from.join(','), change.to ?? '', change.fence === undefined ? '' : `${change.fence.field}_epoch`, change.fence?.epoch ?? 0,
      change.done?.entryId ?? '', BATCH_GROUP, change.finalize === true ? '1' : '0', id, this.options.retentionMs,
      ...Object.entries(change.fields ?? {}).flat()))
    const status = String(reply[1])
    return { applied: Number(reply[0]) === 1, status: status === '' ? undefined : status }
  }

  async startBatch (task: Task, epoch: number, plan: BatchPlan, now: number): Promise<boolean> {
    const k = this.keys
    const id = task.batchId
    const started = await this.timed('start', () => this.script<number>('start-batch', k.batch(id), k.shards(id), k.work, k.statusCounts, k.active, k.done(id),
      epoch, now, plan.model, plan.version, plan.total, task.entryId, BATCH_GROUP, id, this.options.retentionMs, ...plan.shards.map(encodeRange)))
    return started === 1
  }

  async readTasks (count: number, idleMs: number): Promise<Task[]> {
    await this.ensureGroup()
    const consumer = this.redis.instanceId
    const toTask = ([entryId, fields]: [string, string[]]): Task => {
      const values = new Map<string, string>()
      for (let i = 0; i + 1 < fields.length; i += 2) values.set(fields[i], fields[i + 1])
      const value = (name: string): string => values.get(name) ?? ''
      return { entryId, kind: value('kind') as TaskKind, batchId: value('batch'), shard: Number(value('shard')) }
    }
    try {
      const stolen = await this.timed('read', () => this.client.xautoclaim(this.keys.work, BATCH_GROUP, consumer, idleMs, '0-0', 'COUNT', count)) as [string, Array<[string, string[]] | null>]
      const tasks = stolen[1].flatMap((entry) => (entry === null ? [] : [toTask(entry)]))
      if (tasks.length > 0) return tasks
      const fresh = await this.timed('read', () => this.client.xreadgroup('GROUP', BATCH_GROUP, consumer, 'COUNT', count, 'STREAMS', this.keys.work, '>')) as Array<[string, Array<[string, string[]]>]> | null
      return fresh === null ? [] : fresh.flatMap(([, list]) => list.map(toTask))
    } catch (error) {
      // The group goes with its stream when the stream expires: create it again on the next read.
      if (String((error as Error).message).includes('NOGROUP')) this.groupReady = false
      throw error
    }
  }

  async claim (task: Task, maxAttempts: number): Promise<Claim> {
    const k = this.keys
    const id = task.batchId
    const reply = await this.timed('claim', () => this.script<Reply>('claim-task', k.batch(id), k.shards(id), k.done(id), k.work, k.statusCounts,
      task.entryId, task.kind, task.shard, this.redis.instanceId, maxAttempts, BATCH_GROUP, Math.floor(Date.now() / 1000), this.options.retentionMs, id, k.active))
    const kind = String(reply[0])
    if (kind === 'skip' || kind === 'exhausted') return { kind }
    if (kind === 'validate' || kind === 'final') return { kind, epoch: Number(reply[1]) } as Claim
    return {
      kind: 'shard',
      epoch: Number(reply[1]),
      range: decodeRange(String(reply[2])),
      done: [...String(reply[3])].map((bit) => bit === '1'),
      takenOver: Number(reply[4]) === 1,
      handedBack: Number(reply[5]) === 1
    }
  }

  async renew (task: Task, epoch: number): Promise<boolean> {
    const [hash, field] = task.kind === 'shard' ? [this.keys.shards(task.batchId), `${task.shard}:e`] : [this.keys.batch(task.batchId), `${task.kind}_epoch`]
    const renewed = await this.timed('renew', () => this.script<number>('renew-claim', hash, this.keys.work, field, epoch, BATCH_GROUP, this.redis.instanceId, task.entryId))
    return renewed === 1
  }

  async commit (task: Task, epoch: number, part: string, lines: readonly CommittedLine[]): Promise<CommitResult> {
    const k = this.keys
    const id = task.batchId
    const reply = await this.timed('commit', () => this.script<Reply>('commit-part', k.batch(id), k.shards(id), k.done(id), k.parts(id), k.work, k.statusCounts, k.active,
      task.shard, epoch, part, task.entryId, BATCH_GROUP, Math.floor(Date.now() / 1000), this.options.retentionMs, id,
      lines.map((line) => line.index).join(','), lines.map((line) => (line.ok ? 'o' : 'f')).join('')))
    const kind = String(reply[0])
    if (kind === 'stale' || kind === 'sealed') return { kind }
    return { kind: 'ok', won: Number(reply[1]), shardComplete: Number(reply[2]) === 1 }
  }

  async handBack (task: Task, epoch: number): Promise<boolean> {
    const k = this.keys
    const reply = await this.timed('hand_back', () => this.script<number>('hand-back', k.shards(task.batchId), k.work, k.batch(task.batchId),
      task.shard, epoch, task.entryId, BATCH_GROUP, task.batchId, this.options.retentionMs))
    return reply === 1
  }

  async finalSnapshot (batchId: string): Promise<FinalSnapshot> {
    const k = this.keys
    const [[, record], [, shardFields], [, parts]] = await this.timed('snapshot', () => this.client.multi()
      .hgetall(k.batch(batchId)).hgetall(k.shards(batchId)).hgetall(k.parts(batchId)).exec()) as [[null, Record<string, string>], [null, Record<string, string>], [null, Record<string, string>]]
    const shards: ShardRange[] = []
    for (let s = 0; shardFields[`${s}:r`] !== undefined; s++) shards.push(decodeRange(shardFields[`${s}:r`]))
    return { record, shards, parts: new Map(Object.entries(parts).map(([name, lines]) => [name, lines.split(',').map(Number)])) }
  }

  async release (task: Task): Promise<void> {
    await this.timed('release', () => this.client.multi().xack(this.keys.work, BATCH_GROUP, task.entryId).xdel(this.keys.work, task.entryId).exec())
  }

  async statusCounts (): Promise<Record<string, number>> {
    const counts = await this.timed('counts', () => this.client.hgetall(this.keys.statusCounts))
    return Object.fromEntries(Object.entries(counts).map(([status, count]) => [status, Number(count)]))
  }

  async activeBatches (): Promise<string[]> {
    return this.timed('active', () => this.client.smembers(this.keys.active))
  }

  async close (): Promise<void> {}

  private async ensureGroup (): Promise<void> {
    if (this.groupReady) return
    await this.timed('group', () => createGroupWithTtl(this.client, this.keys.work, BATCH_GROUP, this.options.retentionMs))
    this.groupReady = true
  }
}
