import { performance } from 'node:perf_hooks'
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Metrics } from '../metrics.js'
import { GroupCommit } from './group-commit.js'
import { isFinal, JournalUnavailableError, type AcceptEntry, type HandOff, type AcceptResult, type Completion, type Journal, type RequestState, type RequestView } from './journal.js'
import { journalKeys, type JournalKeys } from './keys.js'
import { ACCEPT, CLAIM_REPLAY, COMPLETE, HAND_OFF, REAP_DEAD, RENEW_LEASE } from './scripts.js'

export interface RedisJournalOptions {
  readonly url: string
  readonly namespace: string
  readonly instanceId: string
  readonly resultTtlSeconds: number
  readonly commandTimeoutMs: number
  readonly leaseTtlMs: number
  readonly metrics: Metrics
  readonly log: Logger
}

type ScriptClient = Redis & {
  spotgateAcceptBuffer: (...args: Array<string | Buffer | number>) => Promise<Array<number | Buffer[]>>
  spotgateComplete: (...args: Array<string | Buffer | number>) => Promise<number[]>
  spotgateHandOff: (...args: Array<string | Buffer | number>) => Promise<number>
  spotgateRenewLease: (...args: Array<string | number>) => Promise<number>
  spotgateReapDead: (...args: Array<string | number>) => Promise<[number, number]>
  spotgateClaimReplayBuffer: (...args: Array<string | number>) => Promise<Buffer[]>
}

const HEALTH_INTERVAL_MS = 250
/** A ping unanswered this long marks the journal unavailable (a hung server never closes its socket). */
const HEALTH_TIMEOUT_MS = 500
const MAX_UNSENT_COMPLETIONS = 10_000
/** Hand-offs of a drain, which cost a replay no attempt (unlike a crash, an error or an orphan). */
const CLEAN_HAND_OFFS = new Set(['drain', 'deadline', 'signal'])

export class RedisJournal implements Journal {
  readonly kind = 'redis' as const
  readonly peersCanReplay = true
  private readonly client: ScriptClient
  private subscriber: Redis | undefined
  private readonly keys: JournalKeys
  private readonly accepts: GroupCommit<AcceptEntry, AcceptResult>
  private readonly completions: GroupCommit<Completion, number>
  private readonly handOffs: GroupCommit<HandOff, void>
  /** Channels waited on, each subscribed once however many requests wait on it. */
  private readonly subscriptions = new Map<string, { readonly waiters: Set<() => void>, readonly subscribed: Promise<void> }>()
  private unsent: Completion[] = []
  private acceptedAny = false
  private pingStartedAt: number | undefined
  private healthy = false
  private problem = 'journal is connecting to Redis'
  private readonly healthTimer: NodeJS.Timeout
  private closed = false

  constructor (private readonly options: RedisJournalOptions) {
    this.keys = journalKeys(options.namespace)
    // Fail fast instead of queueing: a request the journal cannot take now is refused with 503.
    this.client = new Redis(options.url, {
      enableOfflineQueue: false,
      commandTimeout: options.commandTimeoutMs,
      maxRetriesPerRequest: 0,
      enableAutoPipelining: true,
      connectTimeout: Math.max(1000, options.commandTimeoutMs),
      retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 1000),
      keepAlive: 5000,
      connectionName: `spotgate:${options.instanceId}`
    }) as ScriptClient
    this.client.defineCommand('spotgateAccept', { lua: ACCEPT })
    this.client.defineCommand('spotgateComplete', { lua: COMPLETE })
    this.client.defineCommand('spotgateHandOff', { lua: HAND_OFF })
    this.client.defineCommand('spotgateRenewLease', { lua: RENEW_LEASE })
    this.client.defineCommand('spotgateReapDead', { lua: REAP_DEAD })
    this.client.defineCommand('spotgateClaimReplay', { lua: CLAIM_REPLAY })
    this.client.on('ready', () => this.checkHealth())
    this.client.on('error', (error: Error) => this.markUnhealthy(`Redis error: ${error.message}`))
    this.client.on('close', () => this.markUnhealthy('Redis connection closed'))
    this.accepts = new GroupCommit((entries) => this.acceptGroup(entries))
    this.completions = new GroupCommit((entries) => this.completeGroup(entries))
    this.handOffs = new GroupCommit((entries) => this.handOffGroup(entries))
    this.healthTimer = setInterval(() => this.checkHealth(), HEALTH_INTERVAL_MS)
    this.healthTimer.unref()
  }

  unavailableReason (): string | undefined {
    return this.healthy ? undefined : this.problem
  }

  /** Resolves once Redis answers, or rejects after `timeoutMs`. */
  async waitUntilAvailable (timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.healthy) {
      if (Date.now() > deadline) throw new JournalUnavailableError(this.problem)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }

  accept (entry: AcceptEntry): Promise<AcceptResult> {
    if (!this.healthy) return Promise.reject(new JournalUnavailableError(this.problem))
    return this.accepts.add(entry)
  }

  async complete (completion: Completion): Promise<void> {
    try {
      if (!this.healthy) throw new JournalUnavailableError(this.problem)
      await this.completions.add(completion)
    } catch (error) {
      this.keepForRetry(completion, error as Error)
    }
  }

  handOff (handOff: HandOff): Promise<void> {
    if (!this.healthy) return Promise.reject(new JournalUnavailableError(this.problem))
    return this.handOffs.add(handOff)
  }

  async get (id: string): Promise<RequestView | undefined> {
    return this.timed('get', async () => {
      const [state, owner, code, ctype, body, hlen, fp] = await this.client.hmgetBuffer(this.keys.request(id), 'state', 'owner', 'code', 'ctype', 'body', 'hlen', 'fp')
      if (state === null) return undefined
      return { ...toView(id, state.toString(), owner?.toString() ?? '', code, ctype, body, hlen), ...(fp !== null && { fingerprint: fp.toString() }) }
    })
  }

  async payload (id: string): Promise<Buffer | undefined> {
    return this.timed('payload', async () => (await this.client.hgetBuffer(this.keys.request(id), 'payload')) ?? undefined)
  }

  async waitForFinal (id: string, timeoutMs: number): Promise<RequestView | undefined> {
    if (!this.healthy) throw new JournalUnavailableError(this.problem)
    if (timeoutMs <= 0) return this.get(id)
    const channel = this.keys.channel(id)
    let wake!: () => void
    const woken = new Promise<void>((resolve) => { wake = resolve })
    let subscription = this.subscriptions.get(channel)
    if (subscription === undefined) {
      const subscribed = this.timed('subscribe', async () => { await (await this.subscriberClient()).subscribe(channel) })
      subscribed.catch(() => {})
      subscription = { waiters: new Set(), subscribed }
      this.subscriptions.set(channel, subscription)
    }
    subscription.waiters.add(wake)
    let timer: NodeJS.Timeout | undefined
    try {
      // Subscribed before reading, so a completion between the two is not missed.
      await subscription.subscribed
      const view = await this.get(id)
      if (view === undefined || isFinal(view.state)) return view
      await Promise.race([woken, new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
      return await this.get(id)
    } finally {
      clearTimeout(timer)
      subscription.waiters.delete(wake)
      if (subscription.waiters.size === 0 && this.subscriptions.get(channel) === subscription) {
        this.subscriptions.delete(channel)
        this.subscriber?.unsubscribe(channel).catch(() => {})
      }
    }
  }

  async close (): Promise<void> {
    this.closed = true
    clearInterval(this.healthTimer)
    if (this.unsent.length > 0 && this.healthy) await this.flushUnsent()
    if (this.unsent.length > 0) this.options.log.warn({ count: this.unsent.length }, 'journal closing with completions not stored; peers will replay those requests')
    this.subscriber?.disconnect()
    await this.client.quit().catch(() => this.client.disconnect())
  }

  // Fleet duties (design.md §4, paths 3 and 4): leases, take-overs and the replay stream.

  /** Renews this instance's lease; false when it had lapsed, so peers may have taken its work. */
  async renewLease (): Promise<boolean> {
    const { keys, options } = this
    const wasValid = await this.timed('lease', () => this.client.spotgateRenewLease(1, keys.leases, options.instanceId, options.leaseTtlMs, Math.max(options.resultTtlSeconds * 1000, options.leaseTtlMs * 10)))
    return wasValid === 1
  }

  /** Moves the unfinished requests of instances whose lease expired to the replay stream. */
  async reapDeadInstances (): Promise<{ instances: number, requests: number }> {
    const { keys } = this
    const [instances, requests] = await this.timed('reap', () => this.client.spotgateReapDead(2, keys.leases, keys.replayStream, Date.now(), keys.ownedPrefix, keys.requestPrefix, this.options.resultTtlSeconds * 1000))
    return { instances, requests }
  }

  /** Ids this instance owns in Redis that were accepted before `before` (epoch ms). */
  async ownedBefore (before: number): Promise<string[]> {
    return this.timed('owned', () => this.client.zrangebyscore(this.keys.owned(this.options.instanceId), '-inf', before, 'LIMIT', 0, 1000))
  }

  /** Ends this instance's lease now and hands whatever it still owns to the fleet. */
  async releaseLease (): Promise<number> {
    await this.timed('lease', () => this.client.zadd(this.keys.leases, 0, this.options.instanceId))
    return (await this.reapDeadInstances()).requests
  }

  /** A connection of its own for blocking stream reads, which would stall the shared one. */
  createBlockingClient (blockMs: number): Redis {
    const reader = this.client.duplicate({ enableAutoPipelining: false, commandTimeout: blockMs + this.options.commandTimeoutMs, connectionName: `spotgate:${this.options.instanceId}:replay` })
    reader.on('error', () => {})
    return reader
  }

  async ensureReplayGroup (): Promise<void> {
    try {
      await this.client.xgroup('CREATE', this.keys.replayStream, this.keys.replayGroup, '0', 'MKSTREAM')
    } catch (error) {
      if (!String((error as Error).message).includes('BUSYGROUP')) throw error
    }
    // Every key expires: an idle fleet's stream goes after RESULT_TTL_S (and its group is created again).
    if (await this.client.pttl(this.keys.replayStream) < 0) await this.client.pexpire(this.keys.replayStream, this.options.resultTtlSeconds * 1000)
  }

  /**
   * Up to `count` replay entries for this instance: first those a dead or stalled
   * replayer held longer than `claimIdleMs`, then new ones (blocking up to `blockMs`).
   */
  async readReplayEntries (reader: Redis, count: number, blockMs: number, claimIdleMs: number): Promise<ReplayEntry[]> {
    const { keys, options } = this
    const stolen = await this.timed('replay_read', () => this.client.xautoclaim(keys.replayStream, keys.replayGroup, options.instanceId, claimIdleMs, '0-0', 'COUNT', count)) as [string, Array<[string, string[]] | null>]
    const entries = stolen[1].flatMap((entry) => (entry === null ? [] : [toEntry(entry)]))
    if (entries.length > 0) return entries
    const fresh = await reader.xreadgroup('GROUP', keys.replayGroup, options.instanceId, 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', keys.replayStream, '>') as Array<[string, Array<[string, string[]]>]> | null
    return fresh === null ? [] : fresh.flatMap(([, list]) => list.map(toEntry))
  }

  async claimReplay (entry: ReplayEntry, maxAttempts: number): Promise<ReplayClaimResult> {
    const { keys, options } = this
    const reply = await this.timed('replay_claim', () => this.client.spotgateClaimReplayBuffer(3, keys.request(entry.id), keys.leases, keys.replayStream,
      Date.now(), options.instanceId, maxAttempts, keys.ownedPrefix, keys.replayGroup, entry.entryId, entry.id))
    const kind = reply[0].toString()
    if (kind === 'skip') return { kind: 'skip' }
    if (kind === 'exhausted') return { kind: 'exhausted', attempts: Number(reply[1].toString()), lastError: reply[2].toString() }
    return { kind: 'claimed', payload: reply[1], fingerprint: reply[2].toString(), attempts: Number(reply[3].toString()), handedOffAt: Number(reply[4].toString()) }
  }

  /** Keeps why a replay attempt failed, for the answer stored if every attempt fails. */
  async recordReplayError (id: string, message: string): Promise<void> {
    await this.timed('replay_error', () => this.client.hset(this.keys.request(id), 'error', message.slice(0, 500)))
  }

  /** Whether this instance has journaled any request (so it holds a lease, created by the accept). */
  get hasAccepted (): boolean {
    return this.acceptedAny
  }

  /** Resets the idle time of entries still being replayed here, without counting a delivery, so no peer steals them. */
  async touchReplays (entryIds: string[]): Promise<void> {
    if (entryIds.length === 0) return
    await this.timed('replay_touch', () => this.client.xclaim(this.keys.replayStream, this.keys.replayGroup, this.options.instanceId, 0, ...entryIds, 'JUSTID'))
  }

  async ackReplay (entryId: string): Promise<void> {
    const { keys } = this
    await this.timed('replay_ack', async () => {
      await this.client.xack(keys.replayStream, keys.replayGroup, entryId)
      await this.client.xdel(keys.replayStream, entryId)
    })
  }

  /** Entries waiting in the replay stream (for the backlog gauge). */
  async replayBacklog (): Promise<number> {
    return this.timed('replay_backlog', () => this.client.xlen(this.keys.replayStream))
  }

  private async subscriberClient (): Promise<Redis> {
    if (this.subscriber === undefined) {
      const subscriber = this.client.duplicate({ enableAutoPipelining: false, connectionName: `spotgate:${this.options.instanceId}:sub` })
      subscriber.on('error', () => {})
      subscriber.on('message', (channel: string) => {
        for (const wake of this.subscriptions.get(channel)?.waiters ?? []) wake()
      })
      this.subscriber = subscriber
    }
    const subscriber = this.subscriber
    if (subscriber.status !== 'ready') {
      await new Promise<void>((resolve, reject) => {
        const ready = (): void => { clearTimeout(timer); resolve() }
        const timer = setTimeout(() => {
          subscriber.off('ready', ready)
          reject(new JournalUnavailableError('Redis subscriber not connected'))
        }, this.options.commandTimeoutMs)
        subscriber.once('ready', ready)
      })
    }
    return subscriber
  }

  private async acceptGroup (entries: AcceptEntry[]): Promise<AcceptResult[]> {
    const { keys, options } = this
    const args: Array<string | Buffer | number> = [entries.length + 2, keys.owned(options.instanceId), keys.leases]
    for (const entry of entries) args.push(keys.request(entry.id))
    args.push(Date.now(), options.resultTtlSeconds * 1000, options.instanceId, options.leaseTtlMs)
    for (const entry of entries) args.push(entry.id, entry.fingerprint, entry.model, entry.version, entry.payload)
    const replies = await this.timed('accept', () => this.client.spotgateAcceptBuffer(...args))
    this.acceptedAny = true
    return replies.map((reply, index) => {
      if (!Array.isArray(reply)) return { accepted: true }
      const [state, fp, owner, code, ctype, body, hlen] = reply
      return {
        accepted: false,
        sameBody: fp.toString() === entries[index].fingerprint,
        existing: toView(entries[index].id, state.toString(), owner.toString(), code, ctype, body, hlen)
      }
    })
  }

  private async completeGroup (entries: Completion[]): Promise<number[]> {
    const { keys, options } = this
    const args: Array<string | Buffer | number> = [entries.length]
    for (const entry of entries) args.push(keys.request(entry.id))
    args.push(Date.now(), options.resultTtlSeconds * 1000, keys.ownedPrefix, keys.channelPrefix)
    for (const entry of entries) {
      args.push(entry.id, entry.state, entry.response.statusCode, entry.response.contentType, entry.response.body, entry.response.headerLength ?? '')
    }
    return this.timed('complete', () => this.client.spotgateComplete(...args))
  }

  private async handOffGroup (entries: HandOff[]): Promise<void[]> {
    const { keys } = this
    // One script call per reason keeps the stream entries' reason exact.
    for (const reason of new Set(entries.map((e) => e.reason))) {
      const ids = entries.filter((e) => e.reason === reason).map((e) => e.id)
      const args: Array<string | number> = [ids.length + 1, ...ids.map((id) => keys.request(id)), keys.replayStream, Date.now(), keys.ownedPrefix, reason, this.options.resultTtlSeconds * 1000, this.options.instanceId, CLEAN_HAND_OFFS.has(reason) ? '1' : '0', ...ids]
      await this.timed('hand_off', () => this.client.spotgateHandOff(...args))
    }
    return entries.map(() => undefined)
  }

  private keepForRetry (completion: Completion, error: Error): void {
    if (this.closed) return
    if (this.unsent.length >= MAX_UNSENT_COMPLETIONS) {
      const dropped = this.unsent.shift() as Completion
      this.options.log.error({ requestId: dropped.id }, 'dropping an unsent completion; a peer will replay the request')
    }
    this.unsent.push(completion)
    this.options.log.warn({ requestId: completion.id, err: error }, 'could not store a result; retrying when Redis is back')
  }

  private async flushUnsent (): Promise<void> {
    const batch = this.unsent
    this.unsent = []
    try {
      await this.completeGroup(batch)
    } catch {
      this.unsent = batch.concat(this.unsent)
    }
  }

  private checkHealth (): void {
    if (this.closed) return
    const now = performance.now()
    if (this.pingStartedAt !== undefined) {
      if (now - this.pingStartedAt > HEALTH_TIMEOUT_MS) this.markUnhealthy(`Redis did not answer PING within ${HEALTH_TIMEOUT_MS} ms`)
      return
    }
    if (this.client.status !== 'ready') {
      this.markUnhealthy(`Redis connection is ${this.client.status}`)
      return
    }
    this.pingStartedAt = now
    this.client.ping().then(
      () => {
        this.pingStartedAt = undefined
        if (!this.healthy) this.options.log.info('journal available')
        this.healthy = true
        if (this.unsent.length > 0) void this.flushUnsent()
      },
      (error: Error) => {
        this.pingStartedAt = undefined
        this.markUnhealthy(`Redis PING failed: ${error.message}`)
      }
    )
  }

  private markUnhealthy (problem: string): void {
    if (this.closed) return
    if (this.healthy) this.options.log.error({ problem }, 'journal unavailable')
    this.healthy = false
    this.problem = `journal unavailable: ${problem}`
  }

  private async timed<T> (op: string, run: () => Promise<T>): Promise<T> {
    const started = performance.now()
    try {
      return await run()
    } catch (error) {
      this.options.metrics.journalErrors.inc({ op })
      throw new JournalUnavailableError(`journal unavailable: ${(error as Error).message}`)
    } finally {
      this.options.metrics.journalDuration.observe({ op }, (performance.now() - started) / 1000)
    }
  }
}

export interface ReplayEntry {
  readonly entryId: string
  readonly id: string
}

export type ReplayClaimResult =
  | { readonly kind: 'skip' }
  | { readonly kind: 'exhausted', readonly attempts: number, readonly lastError: string }
  | { readonly kind: 'claimed', readonly payload: Buffer, readonly fingerprint: string, readonly attempts: number, readonly handedOffAt: number }

function toEntry ([entryId, fields]: [string, string[]]): ReplayEntry {
  const at = fields.indexOf('id')
  return { entryId, id: at === -1 ? '' : fields[at + 1] }
}

function toView (id: string, state: string, owner: string, code: Buffer | null, ctype: Buffer | null, body: Buffer | null, hlen: Buffer | null): RequestView {
  const view: RequestView = { id, state: state as RequestState, owner }
  if (!isFinal(view.state) || code === null || code.length === 0) return view
  const headerLength = hlen === null || hlen.length === 0 ? undefined : Number(hlen.toString())
  return {
    ...view,
    response: { statusCode: Number(code.toString()), contentType: ctype?.toString() ?? 'application/json', body: body ?? Buffer.alloc(0), ...(headerLength !== undefined && { headerLength }) }
  }
}
