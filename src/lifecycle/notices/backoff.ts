export interface BackoffOptions {
  /** Delay after the first failure. */
  readonly initialMs?: number
  /** The delay never grows past this. */
  readonly maxMs?: number
}

/**
 * Exponential backoff for a metadata service that is down, throttling or answering
 * garbage. Each delay is drawn from the upper quarter below its ceiling, so instances
 * that failed together do not retry in lockstep.
 */
export class Backoff {
  private failures = 0
  private readonly initialMs: number
  private readonly maxMs: number

  constructor ({ initialMs = 500, maxMs = 5000 }: BackoffOptions = {}) {
    this.initialMs = initialMs
    this.maxMs = Math.max(initialMs, maxMs)
  }

  /** The delay before the next attempt; each call counts one more failure in a row. */
  next (): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.failures, 30))
    this.failures++
    return Math.round(ceiling * (0.75 + Math.random() * 0.25))
  }

  reset (): void {
    this.failures = 0
  }
}
