import { closeClient, createGroupWithTtl, type RedisClient } from './clients.js'
import type { RedisConnection } from './connection.js'
import { REPLAY_GROUP, type JournalKeys, type PartitionKeys } from './keys.js'

// What makes instances one fleet, beside the request journal: leases, taking over the
// work of dead instances, the replay streams and their claims (docs/journal.md). The
// lease keeper and the replay consumer each see only the part they use.

/** What the lease keeper needs: its lease, dead peers' work, orphans and lost hand-offs. */
export interface LeaseStore {
  unavailableReason: () => string | undefined
  /** Renews this instance's lease; false when a lease it held had lapsed (peers may have taken its work). */
  renewLease: () => Promise<boolean>
  /** Moves the unfinished requests of instances whose lease expired to the replay streams. */
  reapDeadInstances: () => Promise<{ instances: number, requests: number }>
  /** Ids this instance owns in Redis that were accepted before `before` (epoch ms). */
  ownedBefore: (before: number) => Promise<string[]>
  /** Ends this instance's lease now and hands whatever it still owns to the fleet; returns how many. */
  releaseLease: () => Promise<number>
  /** Queues again handed-off requests at least `minAgeMs` old whose replay entry is gone; returns their ids. */
  reconcileHandOffs: (minAgeMs: number, limit: number) => Promise<string[]>
}

export interface ReplayEntry {
  readonly entryId: string
  readonly id: string
  readonly partition: number
}

export type ReplayClaimResult =
  | { readonly kind: 'skip' }
  | { readonly kind: 'exhausted', readonly attempts: number, readonly lastError: string, readonly fingerprint: string }
  | { readonly kind: 'claimed', readonly request: Buffer, readonly fingerprint: string, readonly attempts: number, readonly handedOffAt: number }

/** What the replay consumer needs: the replay streams and claims on their entries. */
export interface ReplayStore {
  unavailableReason: () => string | undefined
  /**
   * Up to `count` entries for this instance: first those a dead or stalled replayer held
   * longer than `claimIdleMs`, then new ones, waiting up to `blockMs` when none is there.
   */
  readReplayEntries: (count: number, claimIdleMs: number, blockMs: number) => Promise<ReplayEntry[]>
  claimReplay: (entry: ReplayEntry, maxAttempts: number) => Promise<ReplayClaimResult>
  /** Acks and deletes an entry, once its request is final or handed off again. */
  ackReplay: (entry: ReplayEntry) => Promise<void>
  /** Resets the idle time of entries still being replayed here, so no peer steals them. */
  touchReplays: (entries: readonly ReplayEntry[]) => Promise<void>
  /** Keeps why a replay attempt failed, for the answer stored if every attempt fails. */
  recordReplayError: (id: string, message: string) => Promise<void>
  /** Entries waiting in the replay streams. */
  replayBacklog: () => Promise<number>
  /** Stops blocking reads. */
  stopReading: () => void
}

export interface FleetStoreOptions {
  readonly keys: JournalKeys
  readonly resultTtlSeconds: number
  readonly leaseTtlMs: number
}

const OWNED_PAGE = 1000

export class FleetStore implements LeaseStore, ReplayStore {
  private readonly ttlMs: number
  /** Partitions where this instance held a lease at the last renewal. */
  private readonly leaseHeld: boolean[]
  private readonly groupsReady: boolean[]
  private reader: RedisClient | undefined
  /** Where the next read starts, so every partition's stream is served in turn. */
  private nextPartition = 0

  constructor (private readonly redis: RedisConnection, private readonly options: FleetStoreOptions) {
    this.ttlMs = options.resultTtlSeconds * 1000
    this.leaseHeld = options.keys.partitions.map(() => false)
    this.groupsReady = options.keys.partitions.map(() => false)
  }

  private get partitions (): readonly PartitionKeys[] {
    return this.options.keys.partitions
  }

  unavailableReason (): string | undefined {
    return this.redis.unavailableReason()
  }

  /** An accept created (or found) this instance's lease in `partition`: a lapse there from now on is a loss. */
  leaseCreated (partition: number): void {
    this.leaseHeld[partition] = true
  }

  async renewLease (): Promise<boolean> {
    const { leaseTtlMs } = this.options
    const keyTtl = Math.max(this.ttlMs, leaseTtlMs * 10)
    const valid = await this.redis.timed('lease', () => Promise.all(this.partitions.map((p) =>
      this.redis.script<number>('spotgateRenewLease', p.leases, this.redis.instanceId, leaseTtlMs, keyTtl))))
    let kept = true
    valid.forEach((wasValid, index) => {
      if (this.leaseHeld[index] && wasValid !== 1) kept = false
      this.leaseHeld[index] = true
    })
    return kept
  }

  async reapDeadInstances (): Promise<{ instances: number, requests: number }> {
    const replies = await this.redis.timed('reap', () => Promise.all(this.partitions.map((p) =>
      this.redis.script<[number, number]>('spotgateReap', p.leases, p.replayStream, p.handedOff, p.ownedPrefix, p.recordPrefix, p.statePrefix, this.ttlMs))))
    // An instance is counted once however many partitions it held work in.
    return { instances: Math.max(0, ...replies.map(([instances]) => instances)), requests: replies.reduce((sum, [, requests]) => sum + requests, 0) }
  }

  async ownedBefore (before: number): Promise<string[]> {
    const { keys } = this.options
    const pages = await this.redis.timed('owned', () => Promise.all(this.partitions.map((p) =>
      this.redis.client.zrangebyscore(keys.owned(p, this.redis.instanceId), '-inf', before, 'LIMIT', 0, OWNED_PAGE))))
    return pages.flat()
  }

  async releaseLease (): Promise<number> {
    await this.redis.timed('lease', () => Promise.all(this.partitions.map((p) => this.redis.client.zadd(p.leases, 0, this.redis.instanceId))))
    return (await this.reapDeadInstances()).requests
  }

  async reconcileHandOffs (minAgeMs: number, limit: number): Promise<string[]> {
    const replies = await this.redis.timed('reconcile', () => Promise.all(this.partitions.map((p) =>
      this.redis.script<[number, ...Buffer[]]>('spotgateReconcile', p.handedOff, p.replayStream, minAgeMs, limit, p.recordPrefix, p.statePrefix, this.ttlMs))))
    return replies.flatMap(([, ...ids]) => ids.map((id) => id.toString()))
  }

  async readReplayEntries (count: number, claimIdleMs: number, blockMs: number): Promise<ReplayEntry[]> {
    const found: ReplayEntry[] = []
    const total = this.partitions.length
    for (let step = 0; step < total && found.length < count; step++) {
      const partition = this.partitions[(this.nextPartition + step) % total]
      await this.ensureGroup(partition)
      found.push(...await this.readPartition(partition, count - found.length, claimIdleMs, 0))
    }
    this.nextPartition = (this.nextPartition + 1) % total
    // One partition (a single node): wait for new entries on the stream itself rather than polling it.
    if (found.length === 0 && total === 1 && blockMs > 0) found.push(...await this.readPartition(this.partitions[0], count, claimIdleMs, blockMs))
    return found
  }

  async claimReplay (entry: ReplayEntry, maxAttempts: number): Promise<ReplayClaimResult> {
    const { keys } = this.options
    const p = this.partitions[entry.partition]
    const reply = await this.redis.timed('replay_claim', () => this.redis.script<Buffer[]>('spotgateClaimReplay',
      p.recordPrefix + entry.id, p.leases, p.replayStream, p.handedOff,
      Date.now(), this.redis.instanceId, maxAttempts, keys.owned(p, this.redis.instanceId), REPLAY_GROUP, entry.entryId, entry.id, p.statePrefix + entry.id, this.ttlMs))
    const kind = reply[0].toString()
    if (kind === 'skip') return { kind: 'skip' }
    if (kind === 'exhausted') return { kind: 'exhausted', attempts: Number(reply[1].toString()), lastError: reply[2].toString(), fingerprint: reply[3].toString('latin1') }
    return { kind: 'claimed', request: reply[1], fingerprint: reply[2].toString('latin1'), attempts: Number(reply[3].toString()), handedOffAt: Number(reply[4].toString()) }
  }

  async ackReplay (entry: ReplayEntry): Promise<void> {
    const stream = this.partitions[entry.partition].replayStream
    await this.redis.timed('replay_ack', () => this.redis.client.multi().xack(stream, REPLAY_GROUP, entry.entryId).xdel(stream, entry.entryId).exec())
  }

  async touchReplays (entries: readonly ReplayEntry[]): Promise<void> {
    if (entries.length === 0) return
    const byPartition = new Map<number, string[]>()
    for (const entry of entries) byPartition.set(entry.partition, [...(byPartition.get(entry.partition) ?? []), entry.entryId])
    await this.redis.timed('replay_touch', () => Promise.all([...byPartition].map(([partition, ids]) =>
      this.redis.client.call('XCLAIM', this.partitions[partition].replayStream, REPLAY_GROUP, this.redis.instanceId, 0, ...ids, 'JUSTID'))))
  }

  async recordReplayError (id: string, message: string): Promise<void> {
    await this.redis.timed('replay_error', () => this.redis.client.hset(this.options.keys.state(id), 'error', message.slice(0, 500)))
  }

  async replayBacklog (): Promise<number> {
    const lengths = await this.redis.timed('replay_backlog', () => Promise.all(this.partitions.map((p) => this.redis.client.xlen(p.replayStream))))
    return lengths.reduce((sum, length) => sum + length, 0)
  }

  stopReading (): void {
    if (this.reader !== undefined) void closeClient(this.reader, false)
    this.reader = undefined
  }

  private async ensureGroup (partition: PartitionKeys): Promise<void> {
    if (this.groupsReady[partition.index]) return
    // Every key expires: an idle fleet's stream goes after RESULT_TTL_S (and its group is created again).
    await this.redis.timed('replay_group', () => createGroupWithTtl(this.redis.client, partition.replayStream, REPLAY_GROUP, this.ttlMs))
    this.groupsReady[partition.index] = true
  }

  private async readPartition (partition: PartitionKeys, count: number, claimIdleMs: number, blockMs: number): Promise<ReplayEntry[]> {
    const consumer = this.redis.instanceId
    const toEntry = ([entryId, fields]: [string, string[]]): ReplayEntry => {
      const at = fields.indexOf('id')
      return { entryId, id: at === -1 ? '' : fields[at + 1], partition: partition.index }
    }
    try {
      if (blockMs === 0) {
        const stolen = await this.redis.timed('replay_read', () => this.redis.client.xautoclaim(partition.replayStream, REPLAY_GROUP, consumer, claimIdleMs, '0-0', 'COUNT', count)) as [string, Array<[string, string[]] | null>]
        const entries = stolen[1].flatMap((entry) => (entry === null ? [] : [toEntry(entry)]))
        if (entries.length > 0) return entries
      }
      const client = blockMs > 0 ? (this.reader ??= this.redis.blockingClient('replay', blockMs)) : this.redis.client
      const args: Array<string | number> = ['GROUP', REPLAY_GROUP, consumer, 'COUNT', count, ...(blockMs > 0 ? ['BLOCK', blockMs] : []), 'STREAMS', partition.replayStream, '>']
      const fresh = await (client.xreadgroup as (...a: Array<string | number>) => Promise<unknown>)(...args) as Array<[string, Array<[string, string[]]>]> | null
      return fresh === null ? [] : fresh.flatMap(([, list]) => list.map(toEntry))
    } catch (error) {
      // The group vanishes with its stream when the stream expires: create it again on the next read.
      if (String((error as Error).message).includes('NOGROUP')) this.groupsReady[partition.index] = false
      throw error
    }
  }
}
