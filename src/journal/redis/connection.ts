import { performance } from 'node:perf_hooks'
import calculateSlot from 'cluster-key-slot'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Metrics } from '../../metrics.js'
import type { HistogramChild } from '../../preaggregated-metrics.js'
import { JournalUnavailableError } from '../journal.js'
import { closeClient, isCluster, openClient, type RedisClient } from './clients.js'
import { describeTarget, type RedisTarget } from './target.js'

export interface RedisConnectionOptions {
  readonly target: RedisTarget
  readonly instanceId: string
  readonly commandTimeoutMs: number
  /**
   * One key per journal partition, each in its partition's slot: the health check reads
   * them, so on a cluster it knows which partitions' shards answer.
   */
  readonly probeKeys: readonly string[]
  /** The command timeout of the connection that carries large records (at least commandTimeoutMs). */
  readonly bulkTimeoutMs?: number
  readonly metrics: Metrics
  readonly log: Logger
}

/** A script defined from lua/: `spotgateAccept(numberOfKeys?, ...keys, ...args)`. */
type ScriptCall = (...args: Array<string | Buffer | number>) => Promise<unknown>

const HEALTH_INTERVAL_MS = 250
/** A probe unanswered this long marks its partition unreachable (a hung server never closes its socket). */
const HEALTH_TIMEOUT_MS = 500

/**
 * The journal's connection to Redis (one node, Sentinel or Cluster), shared by the
 * request journal and the fleet store: fail fast instead of queueing (a request the
 * journal cannot take now gets 503), a health check per partition that notices a hung
 * server or a shard without a primary, the Lua scripts, and timings per operation.
 */
export class RedisConnection {
  readonly client: RedisClient
  /**
   * Accepts and completions that carry large records go on a connection of their own,
   * with a timeout that allows for their size: on the shared one, the commands queued
   * behind a record of megabytes would wait for it and time out with it.
   */
  private readonly bulk: RedisClient
  /** The health probes' own connection, so a large record in transit cannot fail them. */
  private readonly prober: RedisClient
  /** Connections that accepts go through besides the shared one: the journal is available only while they are up. */
  private readonly writers: RedisClient[] = []
  /** On a cluster, completions publish on the shard (SPUBLISH) rather than to every node. */
  readonly publishCommand: 'PUBLISH' | 'SPUBLISH'
  private subscriber: RedisClient | undefined
  private readonly channelListeners = new Map<string, () => void>()
  private readonly unreachable: Set<number>
  private problem = 'journal is connecting to Redis'
  private probeRound: { readonly startedAt: number, readonly answered: Array<string | null | undefined> } | undefined
  private readonly healthTimer: NodeJS.Timeout
  private readonly recoveryListeners: Array<() => void> = []
  private closed = false
  private readonly durationByOp = new Map<string, HistogramChild>()

  constructor (private readonly options: RedisConnectionOptions) {
    this.client = openClient(options.target, { commandTimeoutMs: options.commandTimeoutMs, connectionName: `spotgate:${options.instanceId}`, autoPipelining: true })
    this.publishCommand = options.target.mode === 'cluster' ? 'SPUBLISH' : 'PUBLISH'
    this.unreachable = new Set(options.probeKeys.map((_, index) => index))
    this.client.on('ready', () => this.checkHealth())
    this.client.on('error', (error: Error) => this.noteProblem(`Redis error: ${error.message}`))
    this.client.on('close', () => this.noteProblem('Redis connection closed'))
    // Its own command timeout is only a backstop: the probe round's timeout judges (checkHealth).
    this.prober = openClient(options.target, { commandTimeoutMs: 4 * HEALTH_TIMEOUT_MS, connectionName: `spotgate:${options.instanceId}:health`, autoPipelining: false })
    this.prober.on('error', () => {})
    this.prober.on('ready', () => this.checkHealth())
    this.bulk = this.dedicatedClient('bulk', this.bulkTimeoutMs)
    this.healthTimer = setInterval(() => this.checkHealth(), HEALTH_INTERVAL_MS)
    this.healthTimer.unref()
    options.log.info({ redis: describeTarget(options.target) }, 'journal on Redis')
  }

  get instanceId (): string {
    return this.options.instanceId
  }

  get commandTimeoutMs (): number {
    return this.options.commandTimeoutMs
  }

  get bulkTimeoutMs (): number {
    return Math.max(this.options.commandTimeoutMs, this.options.bulkTimeoutMs ?? 0)
  }

  get log (): Logger {
    return this.options.log
  }

  get target (): RedisTarget {
    return this.options.target
  }

  /** The primary that holds `key` now ("host:port" on a cluster; one name for every key otherwise). */
  primaryOf (key: string): string {
    return isCluster(this.client) ? this.client.slots[calculateSlot(key)]?.[0] ?? 'unknown' : 'primary'
  }

  /** Why the journal cannot take any work now; undefined while at least one partition answers. */
  unavailableReason (): string | undefined {
    return this.unreachable.size < this.options.probeKeys.length ? undefined : this.problem
  }

  /** Why `partition` cannot take work now (its shard did not answer the last health check). */
  partitionProblem (partition: number): string | undefined {
    if (!this.unreachable.has(partition)) return undefined
    return this.unreachable.size === this.options.probeKeys.length ? this.problem : `journal partition ${partition} unavailable: its Redis shard does not answer`
  }

  /** Rejects at once when Redis is known to be unreachable: callers answer 503 rather than wait. */
  assertAvailable (): void {
    const problem = this.unavailableReason()
    if (problem !== undefined) throw new JournalUnavailableError(problem)
  }

  /** Called each time Redis (or one more of its shards) answers again after an outage. */
  onRecovery (listener: () => void): void {
    this.recoveryListeners.push(listener)
  }

  /** Runs a script loaded from lua/ (binary-safe replies: Buffers). */
  script<T> (command: string, ...args: Array<string | Buffer | number>): Promise<T> {
    return callScript<T>(this.client, command, args)
  }

  /** Runs a script on the connection for large records (see `bulk`). */
  bulkScript<T> (command: string, ...args: Array<string | Buffer | number>): Promise<T> {
    return callScript<T>(this.bulk, command, args)
  }

  /**
   * `run` timed and counted under `op`; any failure becomes JournalUnavailableError, and
   * so does no answer within `deadlineMs` (a cluster client retries a command across a
   * failover; the caller answers 503 instead of waiting for it).
   */
  async timed<T> (op: string, run: () => Promise<T>, deadlineMs = this.options.commandTimeoutMs * 2): Promise<T> {
    const started = performance.now()
    let timer: NodeJS.Timeout | undefined
    try {
      // One node or Sentinel: the command timeout bounds each command, and none is retried.
      if (!isCluster(this.client)) return await run()
      return await Promise.race([
        run(),
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${deadlineMs} ms`)), deadlineMs)
        })
      ])
    } catch (error) {
      this.options.metrics.journalErrors.inc({ op })
      throw error instanceof JournalUnavailableError ? error : new JournalUnavailableError(`journal unavailable: ${(error as Error).message}`)
    } finally {
      clearTimeout(timer)
      this.durations(op).observe((performance.now() - started) / 1000)
    }
  }

  private durations (op: string): HistogramChild {
    let child = this.durationByOp.get(op)
    if (child === undefined) this.durationByOp.set(op, (child = this.options.metrics.journalDuration.child(op)))
    return child
  }

  /**
   * Calls `onMessage` for each message on `channel` (on a cluster, a shard channel) until
   * `unsubscribe`. Resolves once subscribed.
   */
  async subscribe (channel: string, onMessage: () => void): Promise<void> {
    const subscriber = await this.subscriberClient()
    this.channelListeners.set(channel, onMessage)
    if (isCluster(subscriber)) await subscriber.ssubscribe(channel)
    else await subscriber.subscribe(channel)
  }

  unsubscribe (channel: string): void {
    this.channelListeners.delete(channel)
    const subscriber = this.subscriber
    if (subscriber === undefined) return
    const done = isCluster(subscriber) ? subscriber.sunsubscribe(channel) : subscriber.unsubscribe(channel)
    done.catch(() => {})
  }

  /** A connection (or, on a cluster, a client with a subscriber per shard) of its own for pub/sub. */
  private async subscriberClient (): Promise<RedisClient> {
    if (this.subscriber === undefined) {
      const subscriber = openClient(this.options.target, { commandTimeoutMs: this.options.commandTimeoutMs, connectionName: `spotgate:${this.options.instanceId}:sub`, autoPipelining: false }, { shardedSubscribers: true })
      subscriber.on('error', () => {})
      const deliver = (channel: string): void => this.channelListeners.get(channel)?.()
      subscriber.on(isCluster(subscriber) ? 'smessage' : 'message', deliver)
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

  /** A connection of its own for blocking reads, which would stall the shared one. */
  blockingClient (name: string, blockMs: number): RedisClient {
    const reader = openClient(this.options.target, { commandTimeoutMs: blockMs + this.options.commandTimeoutMs, connectionName: `spotgate:${this.options.instanceId}:${name}`, autoPipelining: false })
    reader.on('error', () => {})
    return reader
  }

  /**
   * A client of its own for writes (followed by WAIT, which holds its connection until
   * replicas answer; or carrying large records). The journal counts as available only
   * while it is connected too.
   */
  dedicatedClient (name: string, commandTimeoutMs: number): RedisClient {
    const client = openClient(this.options.target, { commandTimeoutMs, connectionName: `spotgate:${this.options.instanceId}:${name}`, autoPipelining: true })
    client.on('error', () => {})
    client.on('ready', () => this.checkHealth())
    this.writers.push(client)
    return client
  }

  async close (): Promise<void> {
    this.closed = true
    clearInterval(this.healthTimer)
    await Promise.all([
      ...(this.subscriber === undefined ? [] : [closeClient(this.subscriber, false)]),
      closeClient(this.prober, false),
      closeClient(this.client, true),
      closeClient(this.bulk, true)
    ])
  }

  /**
   * One probe per partition; the round's outcome is applied when every probe answered
   * (or, for those still silent, once HEALTH_TIMEOUT_MS passed: a hung server).
   */
  private checkHealth (): void {
    if (this.closed) return
    const now = performance.now()
    const round = this.probeRound
    if (round !== undefined) {
      if (now - round.startedAt > HEALTH_TIMEOUT_MS) {
        // Judged after this turn's I/O: when the event loop was busy past the timeout, the
        // answers may be waiting unread, and timers run before sockets are read.
        setImmediate(() => {
          if (this.probeRound === round) this.apply(round.answered.map((answered) => (answered === undefined ? `Redis did not answer within ${HEALTH_TIMEOUT_MS} ms` : answered)))
        })
      }
      return
    }
    // A writer that ended was closed on purpose (ioredis reconnects every other one).
    for (const client of [this.client, this.prober, ...this.writers.filter((writer) => writer.status !== 'end')]) {
      if (client.status !== 'ready') {
        this.noteProblem(`Redis connection is ${client.status}`)
        return
      }
    }
    const answered: Array<string | null | undefined> = this.options.probeKeys.map(() => undefined)
    this.probeRound = { startedAt: now, answered }
    // Behind Sentinel, a node demoted while the probe's connection stays open answers reads
    // as a replica: the probe then tells nothing of the primary, so it reconnects.
    const onPrimary = this.options.target.mode !== 'sentinel'
      ? Promise.resolve(true)
      : this.prober.role().then((role) => role[0] === 'master', () => true)
    void Promise.all([onPrimary, ...this.options.probeKeys.map((key, partition) => this.prober.pttl(key).then(
      () => { answered[partition] = null },
      (error: Error) => { answered[partition] = `Redis failed a health check: ${error.message}` }
    ))]).then(([primary]) => {
      if (primary === false) {
        answered.fill('the health check reached a replica; reconnecting through Sentinel')
        this.prober.disconnect(true)
      }
      this.probeRound = undefined
      this.apply(answered as Array<string | null>)
    })
  }

  /** Per partition: null when it answered, else why not. */
  private apply (outcome: ReadonlyArray<string | null>): void {
    if (this.closed) return
    const before = this.unreachable.size
    let recovered = false
    outcome.forEach((problem, partition) => {
      if (problem === null) {
        recovered = this.unreachable.delete(partition) || recovered
      } else {
        this.problem = `journal unavailable: ${problem}`
        this.unreachable.add(partition)
      }
    })
    const total = outcome.length
    const after = this.unreachable.size
    if (after === before && !recovered) return
    if (after === 0) this.options.log.info('journal available')
    else if (after < total) this.options.log.warn({ unreachable: [...this.unreachable].sort((x, y) => x - y), problem: this.problem }, 'journal partitions unavailable: their Redis shards do not answer; the rest serve')
    else if (before < total) this.options.log.error({ problem: this.problem }, 'journal unavailable')
    if (recovered) for (const listener of this.recoveryListeners) listener()
  }

  /** The client reports a problem: everything is unreachable until probes say otherwise. */
  private noteProblem (problem: string): void {
    if (this.closed) return
    // A cluster client reports one node's trouble; its probes tell which partitions it affects.
    if (isCluster(this.client)) {
      this.problem = `journal unavailable: ${problem}`
      return
    }
    this.problem = `journal unavailable: ${problem}`
    if (this.unreachable.size === this.options.probeKeys.length) return
    this.options.probeKeys.forEach((_, partition) => this.unreachable.add(partition))
    this.options.log.error({ problem }, 'journal unavailable')
  }
}

/** Runs a script loaded from lua/ on `client` (binary-safe replies: Buffers). */
export function callScript<T> (client: RedisClient | Redis, command: string, args: Array<string | Buffer | number>): Promise<T> {
  const call = (client as unknown as Record<string, ScriptCall>)[`${command}Buffer`]
  return call.apply(client, args) as Promise<T>
}
