import { performance } from 'node:perf_hooks'
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Metrics } from '../metrics.js'
import { GroupCommit } from './group-commit.js'
import { isFinal, JournalUnavailableError, type AcceptEntry, type HandOff, type AcceptResult, type Completion, type Journal, type RequestState, type RequestView } from './journal.js'
import { journalKeys, type JournalKeys } from './keys.js'
import { ACCEPT, COMPLETE, HAND_OFF } from './scripts.js'

export interface RedisJournalOptions {
  readonly url: string
  readonly namespace: string
  readonly instanceId: string
  readonly resultTtlSeconds: number
  readonly commandTimeoutMs: number
  readonly metrics: Metrics
  readonly log: Logger
}

type ScriptClient = Redis & {
  spotgateAcceptBuffer: (...args: Array<string | Buffer | number>) => Promise<Array<number | Buffer[]>>
  spotgateComplete: (...args: Array<string | Buffer | number>) => Promise<number[]>
  spotgateHandOff: (...args: Array<string | Buffer | number>) => Promise<number>
}

const HEALTH_INTERVAL_MS = 250
/** A ping unanswered this long marks the journal unavailable (a hung server never closes its socket). */
const HEALTH_TIMEOUT_MS = 500
const MAX_UNSENT_COMPLETIONS = 10_000

export class RedisJournal implements Journal {
  readonly kind = 'redis' as const
  readonly peersCanReplay = true
  private readonly client: ScriptClient
  private subscriber: Redis | undefined
  private readonly keys: JournalKeys
  private readonly accepts: GroupCommit<AcceptEntry, AcceptResult>
  private readonly completions: GroupCommit<Completion, number>
  private readonly handOffs: GroupCommit<HandOff, void>
  private readonly waiters = new Map<string, Set<() => void>>()
  private unsent: Completion[] = []
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
      const [state, owner, code, ctype, body] = await this.client.hmgetBuffer(this.keys.request(id), 'state', 'owner', 'code', 'ctype', 'body')
      if (state === null) return undefined
      return toView(id, state.toString(), owner?.toString() ?? '', code, ctype, body)
    })
  }

  async payload (id: string): Promise<Buffer | undefined> {
    return this.timed('payload', async () => (await this.client.hgetBuffer(this.keys.request(id), 'payload')) ?? undefined)
  }

  async waitForFinal (id: string, timeoutMs: number): Promise<RequestView | undefined> {
    const channel = this.keys.channel(id)
    let wake!: () => void
    const woken = new Promise<void>((resolve) => { wake = resolve })
    let listeners = this.waiters.get(channel)
    if (listeners === undefined) this.waiters.set(channel, (listeners = new Set()))
    listeners.add(wake)
    let timer: NodeJS.Timeout | undefined
    try {
      // Subscribe before reading, so a completion between the two is not missed.
      if (listeners.size === 1) await (await this.subscriberClient()).subscribe(channel)
      const view = await this.get(id)
      if (view === undefined || isFinal(view.state) || timeoutMs <= 0) return view
      await Promise.race([woken, new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
      return await this.get(id)
    } finally {
      clearTimeout(timer)
      listeners.delete(wake)
      if (listeners.size === 0) {
        this.waiters.delete(channel)
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

  private async subscriberClient (): Promise<Redis> {
    if (this.subscriber === undefined) {
      const subscriber = this.client.duplicate({ enableAutoPipelining: false, connectionName: `spotgate:${this.options.instanceId}:sub` })
      subscriber.on('error', () => {})
      subscriber.on('message', (channel: string) => {
        for (const wake of this.waiters.get(channel) ?? []) wake()
      })
      this.subscriber = subscriber
    }
    if (this.subscriber.status !== 'ready') {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new JournalUnavailableError('Redis subscriber not connected')), this.options.commandTimeoutMs)
        this.subscriber!.once('ready', () => { clearTimeout(timer); resolve() })
      })
    }
    return this.subscriber
  }

  private async acceptGroup (entries: AcceptEntry[]): Promise<AcceptResult[]> {
    const { keys, options } = this
    const args: Array<string | Buffer | number> = [entries.length + 1, keys.owned(options.instanceId)]
    for (const entry of entries) args.push(keys.request(entry.id))
    args.push(Date.now(), options.resultTtlSeconds * 1000, options.instanceId)
    for (const entry of entries) args.push(entry.id, entry.fingerprint, entry.model, entry.version, entry.payload)
    const replies = await this.timed('accept', () => this.client.spotgateAcceptBuffer(...args))
    return replies.map((reply, index) => {
      if (!Array.isArray(reply)) return { accepted: true }
      const [state, fp, owner, code, ctype, body] = reply
      return {
        accepted: false,
        sameBody: fp.toString() === entries[index].fingerprint,
        existing: toView(entries[index].id, state.toString(), owner.toString(), code, ctype, body)
      }
    })
  }

  private async completeGroup (entries: Completion[]): Promise<number[]> {
    const { keys, options } = this
    const args: Array<string | Buffer | number> = [entries.length]
    for (const entry of entries) args.push(keys.request(entry.id))
    args.push(Date.now(), options.resultTtlSeconds * 1000, keys.ownedPrefix, keys.channelPrefix)
    for (const entry of entries) {
      args.push(entry.id, entry.state, entry.response.statusCode, entry.response.contentType, entry.response.body)
    }
    return this.timed('complete', () => this.client.spotgateComplete(...args))
  }

  private async handOffGroup (entries: HandOff[]): Promise<void[]> {
    const { keys } = this
    // One script call per reason keeps the stream entries' reason exact.
    for (const reason of new Set(entries.map((e) => e.reason))) {
      const ids = entries.filter((e) => e.reason === reason).map((e) => e.id)
      const args: Array<string | number> = [ids.length + 1, ...ids.map((id) => keys.request(id)), keys.replayStream, Date.now(), keys.ownedPrefix, reason, ...ids]
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

function toView (id: string, state: string, owner: string, code: Buffer | null, ctype: Buffer | null, body: Buffer | null): RequestView {
  const view: RequestView = { id, state: state as RequestState, owner }
  if (!isFinal(view.state) || code === null || code.length === 0) return view
  return { ...view, response: { statusCode: Number(code.toString()), contentType: ctype?.toString() ?? 'application/json', body: body ?? Buffer.alloc(0) } }
}
