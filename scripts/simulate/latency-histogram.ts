// Added latency of a fluid of requests: how many requests waited how long. A bucket for
// "no added latency" and logarithmic buckets from 1 ms to about 28 hours, 40 per decade,
// so percentiles are within 6 % of the true value whatever the load.

const MIN_S = 0.001
const PER_DECADE = 40
const BUCKETS = 8 * PER_DECADE

function bucketOf (seconds: number): number {
  return Math.min(BUCKETS - 1, Math.max(0, Math.floor(Math.log10(seconds / MIN_S) * PER_DECADE)))
}

function lowerEdge (bucket: number): number {
  return MIN_S * 10 ** (bucket / PER_DECADE)
}

export class LatencyHistogram {
  /** Requests with no added latency. */
  private none = 0
  private readonly counts = new Float64Array(BUCKETS)
  private largest = 0

  get total (): number {
    return this.none + this.counts.reduce((a, b) => a + b, 0)
  }

  /** Requests that waited at all. */
  get delayed (): number {
    return this.total - this.none
  }

  get maxS (): number {
    return this.largest
  }

  add (count: number, seconds: number): void {
    if (count <= 0) return
    if (seconds < MIN_S) {
      this.none += count
      return
    }
    this.counts[bucketOf(seconds)] += count
    this.largest = Math.max(this.largest, seconds)
  }

  /** `count` requests whose added latency grew evenly from `fromS` to `toS`. */
  addSpread (count: number, fromS: number, toS: number): void {
    const lo = Math.min(fromS, toS)
    const hi = Math.max(fromS, toS)
    if (hi - lo < MIN_S) return this.add(count, (lo + hi) / 2)
    // The part below MIN_S counts as none; the rest is split over the buckets it covers.
    if (lo < MIN_S) {
      this.none += count * (MIN_S - lo) / (hi - lo)
    }
    let at = Math.max(lo, MIN_S)
    for (let bucket = bucketOf(at); at < hi && bucket < BUCKETS; bucket++) {
      const end = bucket === BUCKETS - 1 ? hi : Math.min(hi, lowerEdge(bucket + 1))
      if (end > at) this.counts[bucket] += count * (end - at) / (hi - lo)
      at = Math.max(at, end)
    }
    this.largest = Math.max(this.largest, hi)
  }

  /**
   * Takes back `count` requests recorded at `seconds` or less (the most recent arrivals
   * of a queue that is handed off wait longest; they are re-recorded once replayed).
   */
  remove (count: number, seconds: number): void {
    let left = count
    for (let bucket = seconds < MIN_S ? -1 : bucketOf(seconds); bucket >= 0 && left > 0; bucket--) {
      const taken = Math.min(left, this.counts[bucket])
      this.counts[bucket] -= taken
      left -= taken
    }
    this.none -= Math.min(left, this.none)
  }

  /** The added latency that a share `q` (0..1) of the requests did not exceed. */
  quantile (q: number): number {
    const total = this.total
    if (total <= 0) return 0
    let rank = q * total
    if (rank <= this.none) return 0
    rank -= this.none
    for (let bucket = 0; bucket < BUCKETS; bucket++) {
      const count = this.counts[bucket]
      if (rank <= count && count > 0) {
        const lo = lowerEdge(bucket)
        return Math.min(this.largest, lo + (lowerEdge(bucket + 1) - lo) * (rank / count))
      }
      rank -= count
    }
    return this.largest
  }
}
