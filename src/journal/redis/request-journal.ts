import { GroupCommit, ItemFailure } from '../group-commit.js'
import { isFinal, JournalUnavailableError, type AcceptEntry, type AcceptResult, type Completion, type HandOff, type Journal, type PendingState, type RequestView } from '../journal.js'
import { decodeFinalRecord, encodeFinalRecord, FINGERPRINT_LENGTH, isFinalRecord, recordFingerprint } from '../record.js'
import type { RedisConnection } from './connection.js'
import type { JournalKeys, PartitionKeys } from './keys.js'
import type { ReplicatedWrites } from './replicated-writes.js'
import { withTimeout } from '../../wait.js'

export interface RedisRequestJournalOptions {
  readonly keys: JournalKeys
  readonly resultTtlSeconds: number
  readonly leaseTtlMs: number
  /** Told when an accept created this instance's lease in a partition (the lease keeper's business). */
  readonly leaseCreated?: (partition: number) => void
  /** With JOURNAL_MIN_REPLICAS: accepts and hand-offs count only once replicas have them. */
  readonly replicated?: ReplicatedWrites
}

/** Hand-offs of a drain, which cost a replay no attempt (unlike a crash, an error or an orphan). */
const CLEAN_HAND_OFFS = new Set(['drain', 'deadline', 'signal'])
const MAX_UNSENT_COMPLETIONS = 10_000
/** How often kept completions are tried again while Redis answers. */
const UNSENT_RETRY_MS = 1000
/** A waiter's key outlives its wait by this much, so a completion racing the wait's end is still published. */
const WAITER_SLACK_MS = 1000
/** A group carrying more than this goes on the connection for large records. */
const BULK_BYTES = 256 * 1024

/** What read-1.lua and accept-n.lua return for an existing request. */
type ExistingReply = Buffer | [head: Buffer, state: Buffer, owner: Buffer]

/**
 * The request journal on Redis (docs/journal.md): accepts and completions of one
 * event-loop turn are one script call per partition (group commit), one packed record
 * per request, first answer wins. Completions that cannot be stored during an outage
 * are kept and written when Redis answers again.
 */
export class RedisRequestJournal implements Journal {
  readonly kind = 'redis' as const
  readonly peersCanReplay = true
  private readonly accepts: GroupCommit<AcceptEntry, AcceptResult>
  private readonly completions: GroupCommit<Completion, number>
  private readonly handOffs: GroupCommit<HandOff, void>
  private stampSequence = 0
  /** Channels waited on, each subscribed once however many requests wait on it. */
  private readonly subscriptions = new Map<string, { readonly waiters: Set<() => void>, readonly subscribed: Promise<void> }>()
  private unsent: Completion[] = []
  private flushing: Promise<void> | undefined
  private readonly retryTimer: NodeJS.Timeout
  private closed = false
  private readonly ttlMs: number

  constructor (private readonly redis: RedisConnection, private readonly options: RedisRequestJournalOptions) {
    this.ttlMs = options.resultTtlSeconds * 1000
    this.accepts = new GroupCommit((entries) => this.byPartition(entries, (partition, group) => this.acceptGroup(partition, group)))
    this.completions = new GroupCommit((entries) => this.byPartition(entries, (partition, group) => this.completeGroup(partition, group)))
    this.handOffs = new GroupCommit((entries) => this.byPartition(entries, (partition, group) => this.handOffGroup(partition, group)))
    redis.onRecovery(() => { void this.retryUnsent() })
    // A completion can fail while the connection stays healthy (a command timeout, a
    // failover's READONLY answer): no recovery follows, so kept results are also retried
    // on a timer while Redis answers.
    this.retryTimer = setInterval(() => { if (this.redis.unavailableReason() === undefined) void this.retryUnsent() }, UNSENT_RETRY_MS)
    this.retryTimer.unref()
  }

  unavailableReason (): string | undefined {
    const { replicated } = this.options
    return this.redis.unavailableReason() ?? (replicated?.allDegraded() === true ? replicated.problem(0) : undefined)
  }

  accept (entry: AcceptEntry): Promise<AcceptResult> {
    const problem = this.partitionProblem(entry.id)
    if (problem !== undefined) return Promise.reject(new JournalUnavailableError(problem))
    return this.accepts.add(entry)
  }

  /** Why the partition of `id` cannot take new work: its shard does not answer, or has too few replicas. */
  private partitionProblem (id: string): string | undefined {
    const partition = this.options.keys.partitionOf(id).index
    return this.redis.partitionProblem(partition) ?? this.options.replicated?.problem(partition)
  }

  async complete (completion: Completion): Promise<void> {
    try {
      this.redis.assertAvailable()
      await this.completions.add(completion)
    } catch (error) {
      this.keepForRetry(completion, error as Error)
    }
  }

  handOff (handOff: HandOff): Promise<void> {
    const problem = this.partitionProblem(handOff.id)
    if (problem !== undefined) return Promise.reject(new JournalUnavailableError(problem))
    return this.handOffs.add(handOff)
  }

  async get (id: string): Promise<RequestView | undefined> {
    return this.read(id, 0)
  }

  async waitForFinal (id: string, timeoutMs: number): Promise<RequestView | undefined> {
    this.redis.assertAvailable()
    if (timeoutMs <= 0) return this.get(id)
    const channel = this.options.keys.channel(id)
    let wake!: () => void
    const woken = new Promise<void>((resolve) => { wake = resolve })
    let subscription = this.subscriptions.get(channel)
    if (subscription === undefined) {
      const subscribed = this.redis.timed('subscribe', () => this.redis.subscribe(channel, () => this.wake(channel)))
      subscribed.catch(() => {})
      subscription = { waiters: new Set(), subscribed }
      this.subscriptions.set(channel, subscription)
    }
    subscription.waiters.add(wake)
    try {
      // Subscribed, then marked as waited for, then read: a completion between any two is not missed.
      await subscription.subscribed
      const view = await this.read(id, timeoutMs + WAITER_SLACK_MS)
      if (view === undefined || isFinal(view.state)) return view
      await withTimeout(woken, timeoutMs)
      return await this.get(id)
    } finally {
      subscription.waiters.delete(wake)
      if (subscription.waiters.size === 0 && this.subscriptions.get(channel) === subscription) {
        this.subscriptions.delete(channel)
        this.redis.unsubscribe(channel)
      }
    }
  }

  async close (): Promise<void> {
    this.closed = true
    clearInterval(this.retryTimer)
    await this.flushing
    if (this.unsent.length > 0 && this.redis.unavailableReason() === undefined) await this.flushUnsent()
    if (this.unsent.length > 0) this.redis.log.warn({ count: this.unsent.length }, 'journal closing with completions not stored; peers will replay those requests')
  }

  private wake (channel: string): void {
    for (const wake of this.subscriptions.get(channel)?.waiters ?? []) wake()
  }

  /** One view of a request without its payload; with `waitMs`, also tells completions to publish for it. */
  private async read (id: string, waitMs: number): Promise<RequestView | undefined> {
    const { keys } = this.options
    const partition = keys.partitionOf(id)
    const reply = await this.redis.timed('get', () => this.redis.script<ExistingReply | null>('spotgateRead', partition.recordPrefix + id, partition.statePrefix + id, partition.waiterPrefix, id, waitMs))
    return reply === null ? undefined : toView(id, reply)
  }

  /**
   * Splits a group commit by partition: each script call touches one hash tag (one
   * cluster slot). A partition that fails (its shard down, too few replicas) fails its
   * own entries only.
   */
  private async byPartition<I extends { id: string }, O> (entries: I[], flush: (partition: PartitionKeys, group: I[]) => Promise<O[]>): Promise<Array<O | ItemFailure>> {
    const { keys } = this.options
    if (keys.partitions.length === 1) return flush(keys.partitions[0], entries)
    const groups = new Map<PartitionKeys, number[]>()
    entries.forEach((entry, index) => {
      const partition = keys.partitionOf(entry.id)
      let positions = groups.get(partition)
      if (positions === undefined) groups.set(partition, (positions = []))
      positions.push(index)
    })
    const results = new Array<O | ItemFailure>(entries.length)
    await Promise.all([...groups].map(async ([partition, positions]) => {
      try {
        const out = await flush(partition, positions.map((i) => entries[i]))
        positions.forEach((position, i) => { results[position] = out[i] })
      } catch (error) {
        const failure = new ItemFailure(error as Error)
        for (const position of positions) results[position] = failure
      }
    }))
    return results
  }

  /**
   * The owned-set score of one accept call: its time in milliseconds, with a fraction that
   * tells apart calls in the same millisecond, so a withdrawal removes only what its own
   * call wrote.
   */
  private acceptStamp (): number {
    this.stampSequence = (this.stampSequence + 1) % 1000
    return Date.now() + this.stampSequence / 1000
  }

  private async acceptGroup (partition: PartitionKeys, entries: AcceptEntry[]): Promise<AcceptResult[]> {
    const { keys, leaseTtlMs, replicated } = this.options
    const owned = keys.owned(partition, this.redis.instanceId)
    const args: Array<string | Buffer | number> = [entries.length + 2, owned, partition.leases]
    for (const entry of entries) args.push(partition.recordPrefix + entry.id)
    const stamp = this.acceptStamp()
    args.push(this.ttlMs, leaseTtlMs, this.redis.instanceId, stamp, partition.recordPrefix.length, partition.statePrefix)
    for (const entry of entries) args.push(entry.record)
    // With replicas to wait for, the accept and its WAIT share the replicated writes' connection.
    const bulk = replicated === undefined && entries.reduce((bytes, entry) => bytes + entry.record.length, 0) > BULK_BYTES
    const script = <T>(command: string, ...scriptArgs: Array<string | Buffer | number>): Promise<T> =>
      bulk ? this.redis.bulkScript<T>(command, ...scriptArgs) : this.redis.script<T>(command, ...scriptArgs)
    const deadlineMs = bulk ? this.redis.bulkTimeoutMs * 2 : undefined
    // The clients of a failed accept get 503: what the call journaled is taken back, so
    // no peer runs a request whose client was told it was not accepted.
    const withdraw = (recordKeys: string[]): Promise<unknown> =>
      this.redis.timed('withdraw', () => script('spotgateWithdraw', recordKeys.length + 1, owned, ...recordKeys, this.redis.instanceId, partition.recordPrefix.length, partition.statePrefix, stamp, partition.waiterPrefix), deadlineMs)
    const replies = replicated === undefined
      ? await this.redis.timed('accept', () => script<Array<number | ExistingReply>>('spotgateAccept', ...args), deadlineMs).catch((error: Error) => {
        // No answer in time (a slow or hung Redis) does not mean the script will not run.
        // The withdrawal is sent on the same connection before the clients get their 503,
        // so Redis runs it right after the accept, before any retry a client sends
        // elsewhere can reach it; its reply is not waited for, so the 503 is not delayed.
        // If the connection is gone, a record left behind belongs to this live instance,
        // whose orphan sweep hands it to a peer: run once, never silently dropped.
        withdraw(entries.map((entry) => partition.recordPrefix + entry.id)).catch(() => {})
        throw error
      })
      : await replicated.script<Array<number | ExistingReply>>('accept', partition.index, 'spotgateAccept', args, (written) =>
        withdraw(entries.filter((_, index) => written[index] === 1).map((entry) => partition.recordPrefix + entry.id)))
    this.options.leaseCreated?.(partition.index)
    return replies.map((reply, index) => {
      if (typeof reply === 'number') return { accepted: true }
      const entry = entries[index]
      const existing = toView(entry.id, reply)
      return { accepted: false, existing, sameBody: existing.fingerprint === entry.fingerprint }
    })
  }

  private async completeGroup (partition: PartitionKeys, entries: Completion[]): Promise<number[]> {
    const { keys } = this.options
    const args: Array<string | Buffer | number> = [entries.length + 1, keys.owned(partition, this.redis.instanceId)]
    for (const entry of entries) args.push(partition.recordPrefix + entry.id)
    args.push(this.ttlMs, partition.recordPrefix.length, partition.waiterPrefix, partition.channelPrefix, this.redis.publishCommand)
    let bytes = 0
    for (const entry of entries) {
      const record = encodeFinalRecord(entry.fingerprint, entry.state, entry.response)
      bytes += record.length
      args.push(record)
    }
    if (bytes > BULK_BYTES) return this.redis.timed('complete', () => this.redis.bulkScript<number[]>('spotgateComplete', ...args), this.redis.bulkTimeoutMs * 2)
    return this.redis.timed('complete', () => this.redis.script<number[]>('spotgateComplete', ...args))
  }

  private async handOffGroup (partition: PartitionKeys, entries: HandOff[]): Promise<void[]> {
    const { keys } = this.options
    // One script call per reason keeps the stream entries' reason exact.
    for (const reason of new Set(entries.map((e) => e.reason))) {
      const ids = entries.filter((e) => e.reason === reason).map((e) => e.id)
      const args: Array<string | number> = [ids.length + 3, partition.replayStream, partition.handedOff, keys.owned(partition, this.redis.instanceId)]
      for (const id of ids) args.push(partition.recordPrefix + id)
      args.push(this.redis.instanceId, reason, CLEAN_HAND_OFFS.has(reason) ? '1' : '0', Date.now(), this.ttlMs, partition.recordPrefix.length, partition.statePrefix)
      const { replicated } = this.options
      if (replicated === undefined) await this.redis.timed('hand_off', () => this.redis.script('spotgateHandOff', ...args))
      else await replicated.script('hand_off', partition.index, 'spotgateHandOff', args)
    }
    return entries.map(() => undefined)
  }

  private keepForRetry (completion: Completion, error: Error): void {
    if (this.closed) return
    if (this.unsent.length >= MAX_UNSENT_COMPLETIONS) {
      const dropped = this.unsent.shift() as Completion
      this.redis.log.error({ requestId: dropped.id }, 'dropping an unsent completion; a peer will replay the request')
    }
    this.unsent.push(completion)
    this.redis.log.warn({ requestId: completion.id, err: error }, 'could not store a result; retrying when Redis is back')
  }

  /** Stores the kept completions, one flush at a time. */
  private async retryUnsent (): Promise<void> {
    if (this.unsent.length === 0 || this.flushing !== undefined) return
    this.flushing = this.flushUnsent().finally(() => { this.flushing = undefined })
    await this.flushing
  }

  private async flushUnsent (): Promise<void> {
    const batch = this.unsent
    this.unsent = []
    try {
      const results = await this.byPartition(batch, (partition, group) => this.completeGroup(partition, group))
      // Partitions whose shard is still down keep theirs for the next recovery.
      const failed = batch.filter((_, index) => results[index] instanceof ItemFailure)
      if (failed.length > 0) this.unsent = failed.concat(this.unsent)
    } catch {
      this.unsent = batch.concat(this.unsent)
    }
  }
}

/** The view of an existing request from what the scripts return: a final record, or a pending head with its state. */
function toView (id: string, reply: ExistingReply): RequestView {
  if (Buffer.isBuffer(reply)) {
    if (!isFinalRecord(reply)) throw new JournalUnavailableError(`journal record of '${id}' is not in a layout this version reads`)
    const final = decodeFinalRecord(reply)
    return { id, state: final.state, owner: '', response: final.response, fingerprint: final.fingerprint }
  }
  const [head, state, owner] = reply
  return {
    id,
    state: state.toString('latin1') as PendingState,
    owner: owner.toString('latin1'),
    fingerprint: head.length > FINGERPRINT_LENGTH ? recordFingerprint(head) : ''
  }
}
