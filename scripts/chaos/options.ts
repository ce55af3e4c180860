import type { RedisMode } from '../lib/redis-deployment.js'

/** Settings of one chaos run; `defaultOptions` fills what the caller leaves out. */
export interface ChaosOptions {
  /** Seconds of load (chaos events happen during it). */
  readonly durationS: number
  readonly instances: number
  /** Concurrent clients, each sending one logical request at a time. */
  readonly concurrency: number
  readonly seed: number
  /** Seconds between chaos events, alternating SIGKILL and SIGTERM. */
  readonly intervalS: number
  /**
   * Chaos events the run must see: while fewer have happened, the load goes on past
   * `durationS` (up to three times it), so a slow machine whose replacements start late
   * still gets them (an event waits for a full fleet). 0: the load stops at `durationS`.
   */
  readonly minEvents: number
  /** Seconds into the load of the first event. */
  readonly firstEventS: number
  /** After the load stops, unanswered requests are polled for at most this long, then counted lost. */
  readonly settleS: number
  /** Spin lines (about 10 ms each) of the batch that runs through the kills and drains (0: no batch leg). */
  readonly batchLines: number
  /** Share of requests that go to the slow spin model (the rest are tabular). */
  readonly spinShare: number
  /** Share of requests sent with `Prefer: respond-async` (202, then polled). */
  readonly asyncShare: number
  /** The journal's Redis: one node, a three-primary Cluster, or a primary with two replicas behind Sentinel. */
  readonly redis: RedisMode
  /** JOURNAL_MIN_REPLICAS of every gateway. */
  readonly minReplicas: number
  /** Seconds into the load when a Redis primary is SIGKILLed (cluster and sentinel); undefined: never. */
  readonly redisKillAtS?: number
  /** Seconds after that kill when the dead server is started again (it rejoins as a replica). */
  readonly redisRestartAfterS: number
  /**
   * Milliseconds before that kill when the primary's replica links are cut: what it
   * acknowledges in between never reaches a replica (asynchronous replication's loss window).
   */
  readonly redisLinkLossMs: number
  /** Gateway settings of every instance. */
  readonly leaseTtlMs: number
  readonly drainGraceMs: number
  readonly drainTimeoutMs: number
  /**
   * `haproxy`: clients go through HAProxy with the shipped configuration, whose retries of
   * a 503 race the replays of the requests it was given for; `client`: each client picks
   * an instance itself (no load balancer in the way of the timing).
   */
  readonly balancer: 'haproxy' | 'client'
  /** With the client balancer: how long a drained instance still gets new requests, as a load balancer's health check lags. */
  readonly balancerLagMs: number
  /** Where each instance's log is written (`<name>.log`); default: kept in memory only. */
  readonly logDir?: string
  /** Progress lines (events, phases); default: none. */
  readonly progress?: (line: string) => void
  /** Aborting stops the run early; everything it started is still stopped. */
  readonly signal?: AbortSignal
}

export function defaultOptions (partial: Partial<ChaosOptions> = {}): ChaosOptions {
  const durationS = partial.durationS ?? 30
  const redis = partial.redis ?? 'single'
  return {
    redis,
    minReplicas: redis === 'single' ? 0 : 1,
    ...(redis !== 'single' && { redisKillAtS: Math.round(durationS * 0.4 * 10) / 10 }),
    redisRestartAfterS: 5,
    redisLinkLossMs: 300,
    asyncShare: 0.2,
    durationS,
    instances: 3,
    concurrency: 16,
    seed: Math.floor(Math.random() * 2 ** 31),
    intervalS: 3.5,
    firstEventS: Math.min(2, durationS / 4),
    minEvents: 0,
    settleS: 20,
    spinShare: 0.2,
    batchLines: 800,
    leaseTtlMs: 1500,
    drainGraceMs: 300,
    drainTimeoutMs: 1500,
    balancer: 'haproxy',
    balancerLagMs: 150,
    ...partial
  }
}
