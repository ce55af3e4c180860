import type { Logger } from 'pino'
import type { Metrics } from '../../metrics.js'
import { JournalUnavailableError } from '../journal.js'
import { callScript, type RedisConnection } from './connection.js'
import { closeClient, isCluster, type RedisClient } from './clients.js'

export interface ReplicatedWritesOptions {
  /** Replicas that must acknowledge a write (`WAIT n`). */
  readonly minReplicas: number
  readonly timeoutMs: number
  /** One key per partition, in its slot: a degraded partition's probe is sent there. */
  readonly probeKeys: readonly string[]
  readonly metrics: Metrics
  readonly log: Logger
}

const PROBE_INTERVAL_MS = 1000

interface QueuedCall {
  readonly op: string
  readonly partition: number
  readonly command: string
  readonly args: Array<string | Buffer | number>
  readonly onShortfall: ((reply: unknown) => Promise<unknown>) | undefined
  readonly resolve: (reply: unknown) => void
  readonly reject: (error: Error) => void
}

/**
 * Writes that count only once `minReplicas` replicas have them: each script call is
 * pipelined with one `WAIT` on a connection of its own (WAIT holds its connection until
 * the replicas answer, so the shared connection never waits on it), and one call carries
 * a whole group commit. A partition whose primary falls short is degraded: its writes
 * are refused at once (503) until a probe finds enough replicas again, while the other
 * partitions, on other shards, keep serving. Replicas belong to a primary, so a shortfall
 * degrades every partition that primary holds, and one probe per primary restores them.
 */
export class ReplicatedWrites {
  private readonly client: RedisClient
  private readonly degraded = new Set<number>()
  /** Script calls of this turn, by the primary they go to. */
  private readonly queued = new Map<string, QueuedCall[]>()
  private flushScheduled = false
  private probeTimer: NodeJS.Timeout | undefined
  private closed = false

  constructor (private readonly redis: RedisConnection, private readonly options: ReplicatedWritesOptions) {
    this.client = redis.dedicatedClient('durable', redis.commandTimeoutMs + options.timeoutMs)
    options.probeKeys.forEach((_, partition) => options.metrics.journalPartitionDegraded.set({ partition: String(partition) }, 0))
  }

  get minReplicas (): number {
    return this.options.minReplicas
  }

  /** Why `partition` refuses durable writes now. */
  problem (partition: number): string | undefined {
    if (!this.degraded.has(partition)) return undefined
    return `journal partition ${partition} has fewer than ${this.options.minReplicas} Redis replica(s) in sync (JOURNAL_MIN_REPLICAS)`
  }

  /** Every partition is degraded: this instance cannot accept anything. */
  allDegraded (): boolean {
    return this.degraded.size === this.options.probeKeys.length
  }

  /**
   * Runs a script in `partition` and waits for the replicas. Resolves with the script's
   * reply once enough replicas acknowledged; rejects with JournalUnavailableError when
   * they did not in time (`onShortfall` gets the reply first, to undo what it can).
   * The scripts called in one turn go to each primary in one pipeline closed by one WAIT.
   */
  script<T> (op: string, partition: number, command: string, args: Array<string | Buffer | number>, onShortfall?: (reply: T) => Promise<unknown>): Promise<T> {
    const problem = this.problem(partition)
    if (problem !== undefined) return Promise.reject(new JournalUnavailableError(problem))
    return new Promise<T>((resolve, reject) => {
      const primary = this.redis.primaryOf(this.options.probeKeys[partition])
      let calls = this.queued.get(primary)
      if (calls === undefined) this.queued.set(primary, (calls = []))
      calls.push({ op, partition, command, args, onShortfall: onShortfall as ((reply: unknown) => Promise<unknown>) | undefined, resolve: resolve as (reply: unknown) => void, reject })
      if (!this.flushScheduled) {
        this.flushScheduled = true
        process.nextTick(() => this.flush())
      }
    })
  }

  private flush (): void {
    this.flushScheduled = false
    const groups = [...this.queued.values()]
    this.queued.clear()
    for (const calls of groups) void this.runGroup(calls)
  }

  private async runGroup (calls: QueuedCall[]): Promise<void> {
    const { minReplicas, timeoutMs } = this.options
    const op = [...new Set(calls.map((call) => call.op))].sort().join('+')
    let results: Array<[Error | null, unknown]>
    try {
      results = await this.redis.timed(op, async () => {
        const pipeline = this.client.pipeline()
        for (const call of calls) callScript(pipeline as unknown as RedisClient, call.command, call.args)
        pipeline.wait(minReplicas, timeoutMs)
        return await pipeline.exec() as Array<[Error | null, unknown]>
      }, this.redis.commandTimeoutMs * 2 + timeoutMs)
    } catch (error) {
      for (const call of calls) call.reject(error as Error)
      return
    }
    const [waitError, acknowledged] = results[calls.length]
    const enough = waitError === null && (acknowledged as number) >= minReplicas
    if (!enough) {
      this.options.metrics.journalReplicaShortfalls.inc({ op }, calls.length)
      this.degrade(this.partitionsWith(this.redis.primaryOf(this.options.probeKeys[calls[0].partition])), Number(acknowledged ?? 0))
    }
    await Promise.all(calls.map(async (call, index) => {
      const [error, reply] = results[index]
      if (error !== null) return call.reject(new JournalUnavailableError(`journal unavailable: ${error.message}`))
      if (enough) return call.resolve(reply)
      await call.onShortfall?.(reply).catch(() => {})
      call.reject(new JournalUnavailableError(waitError === null
        ? `journal partition ${call.partition}: ${String(acknowledged)} of ${minReplicas} Redis replica(s) acknowledged within ${timeoutMs} ms (JOURNAL_MIN_REPLICAS)`
        : `journal partition ${call.partition}: WAIT failed: ${waitError.message}`))
    }))
  }

  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.probeTimer)
    await closeClient(this.client, true)
  }

  /** The partitions `primary` holds now. */
  private partitionsWith (primary: string): number[] {
    return this.options.probeKeys.flatMap((key, partition) => (this.redis.primaryOf(key) === primary ? [partition] : []))
  }

  private degrade (partitions: readonly number[], acknowledged: number): void {
    const added = partitions.filter((partition) => !this.degraded.has(partition))
    if (added.length === 0) return
    for (const partition of added) {
      this.degraded.add(partition)
      this.options.metrics.journalPartitionDegraded.set({ partition: String(partition) }, 1)
    }
    this.options.log.error({ partitions: added, acknowledged, minReplicas: this.options.minReplicas, degraded: this.degradedList() }, 'journal partitions degraded: too few Redis replicas acknowledge writes; their requests get 503')
    this.scheduleProbe()
  }

  private degradedList (): number[] {
    return [...this.degraded].sort((a, b) => a - b)
  }

  private scheduleProbe (): void {
    if (this.probeTimer !== undefined || this.closed) return
    this.probeTimer = setTimeout(() => { void this.probe() }, PROBE_INTERVAL_MS)
    this.probeTimer.unref()
  }

  /**
   * Asks the primary of each group of degraded partitions whether enough replicas are
   * back: a WAIT with no new write, on this connection whose last write fell short.
   */
  private async probe (): Promise<void> {
    const { minReplicas, timeoutMs, probeKeys } = this.options
    const byPrimary = new Map<string, number[]>()
    for (const partition of this.degraded) {
      const primary = this.redis.primaryOf(probeKeys[partition])
      byPrimary.set(primary, [...(byPrimary.get(primary) ?? []), partition])
    }
    await Promise.all([...byPrimary.values()].map(async (partitions) => {
      try {
        const results = await this.client.pipeline().pttl(probeKeys[partitions[0]]).wait(minReplicas, timeoutMs).exec() as Array<[Error | null, unknown]>
        const [waitError, acknowledged] = results[1]
        if (waitError === null && (acknowledged as number) >= minReplicas) this.restore(partitions)
        // A node demoted under this connection ("WAIT cannot be used with replica instances")
        // keeps it open: reconnecting asks Sentinel (or the cluster) for the primary again.
        else if (waitError !== null && !isCluster(this.client) && this.client.status === 'ready') this.client.disconnect(true)
      } catch {
        // Still degraded (or unreachable): probed again next round.
      }
    }))
    this.probeTimer = undefined
    if (this.degraded.size > 0) this.scheduleProbe()
  }

  private restore (partitions: readonly number[]): void {
    const restored = partitions.filter((partition) => this.degraded.delete(partition))
    if (restored.length === 0) return
    for (const partition of restored) this.options.metrics.journalPartitionDegraded.set({ partition: String(partition) }, 0)
    this.options.log.info({ partitions: restored, degraded: this.degradedList() }, 'journal partitions restored: enough Redis replicas acknowledge writes again')
  }
}
