import { LatencyHistogram } from './latency-histogram.js'

/**
 * The fleet's requests as a fluid: arrivals at a constant rate, served first come first
 * served by the ready replicas, queued up to a bound (each gateway's MAX_QUEUE_SIZE) and
 * shed beyond it. Between two events of the simulation the rates are constant, so the
 * backlog moves in straight lines and each request's wait (backlog ÷ service rate when
 * it arrives) is recorded exactly in a histogram.
 */
export class FluidQueue {
  /** Requests accepted and not yet served. */
  backlog = 0
  /** Requests refused: no ready replica, or every queue full. */
  shed = 0
  readonly waits = new LatencyHistogram()

  constructor (readonly arrivalRps: number) {}

  /** `seconds` of arrivals against `serviceRps` of ready capacity and room for `bound` queued requests. */
  flow (seconds: number, serviceRps: number, bound: number): void {
    const r = this.arrivalRps
    const c = serviceRps
    let left = seconds
    // Each case ends at a boundary (the queue full or empty) or at the end: at most three pieces.
    for (let piece = 0; piece < 4 && left > 0; piece++) {
      if (c <= 0) {
        this.shed += r * left
        return
      }
      const b = this.backlog
      if (b > bound) {
        // Fuller than its bound (capacity just left, or replays came back): no room for arrivals until it drains.
        const t = Math.min(left, (b - bound) / c)
        this.backlog = t === left ? b - c * t : bound
        this.shed += r * t
        left -= t
      } else if (r > c) {
        if (bound - b > 1e-9) {
          const t = Math.min(left, (bound - b) / (r - c))
          const next = t === left ? b + (r - c) * t : bound
          this.waits.addSpread(r * t, b / c, next / c)
          this.backlog = next
          left -= t
        } else {
          this.waits.add(c * left, bound / c)
          this.shed += (r - c) * left
          this.backlog = bound
          left = 0
        }
      } else if (r < c && b > 1e-9) {
        const t = Math.min(left, b / (c - r))
        const next = t === left ? b - (c - r) * t : 0
        this.waits.addSpread(r * t, b / c, next / c)
        this.backlog = Math.max(0, next)
        left -= t
      } else {
        this.waits.add(r * left, r < c ? 0 : b / c)
        if (r < c) this.backlog = 0
        left = 0
      }
    }
  }

  /** Takes a share of the backlog away (a replica draining or dying with its own queue). */
  take (share: number): number {
    const taken = this.backlog * share
    this.backlog -= taken
    return taken
  }
}
