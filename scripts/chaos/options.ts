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
  /** Seconds into the load of the first event. */
  readonly firstEventS: number
  /** After the load stops, unanswered requests are polled for at most this long, then counted lost. */
  readonly settleS: number
  /** Share of requests that go to the slow spin model (the rest are tabular). */
  readonly spinShare: number
  /** Gateway settings of every instance. */
  readonly leaseTtlMs: number
  readonly drainGraceMs: number
  readonly drainTimeoutMs: number
  /** How long a drained instance still gets new requests, as a load balancer's health check lags. */
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
  return {
    durationS,
    instances: 3,
    concurrency: 16,
    seed: Math.floor(Math.random() * 2 ** 31),
    intervalS: 3.5,
    firstEventS: Math.min(2, durationS / 4),
    settleS: 20,
    spinShare: 0.2,
    leaseTtlMs: 1500,
    drainGraceMs: 300,
    drainTimeoutMs: 1500,
    balancerLagMs: 150,
    ...partial
  }
}
