import { InputError } from '../input-error.js'
import { NOTICE_S, peakOffered, removals, type SpotInstance, type Trace } from '../trace.js'

// Which of a trace's instances a replay plays, and when, on a machine that stands only a
// few gateway processes. The trace's instance count is scaled down by keeping a subset
// of its instances, whole (their own start and removal), never more than `maxInstances`
// alive at once: first as many of the instances the cloud took back as fit beside one
// survivor (every removal played is a notice to deliver), then any others that fit.

export interface PlayedInstance {
  readonly id: string
  readonly zone: string
  /** Trace seconds. */
  readonly addS: number
  readonly removeS?: number
  /** When its notice is due, trace seconds: the cloud's notice before the removal, or its start if it lived less. */
  readonly noticeAtS?: number
}

export interface ReplayPlan {
  readonly trace: Trace
  readonly speed: number
  readonly maxInstances: number
  /** Trace seconds played (the whole trace, or its first `--hours`). */
  readonly spanS: number
  readonly noticeS: number
  readonly played: readonly PlayedInstance[]
  readonly inTrace: { readonly instances: number, readonly removals: number, readonly peak: number }
  readonly peakPlayed: number
}

/** Longest replay this command starts: the wall time it holds the machine. */
export const MAX_WALL_S = 3 * 3600
/** A notice shorter than this cannot be polled, drained and handed off on a loaded 2-core machine. */
export const MIN_WALL_NOTICE_S = 1

export function planReplay (trace: Trace, options: { speed: number, maxInstances: number, hours?: number }): ReplayPlan {
  const noticeS = NOTICE_S[trace.cloud]
  const { speed, maxInstances } = options
  if (noticeS / speed < MIN_WALL_NOTICE_S) {
    throw new InputError(`--speed ${speed}: the ${noticeS} s ${trace.cloud} notice would last ${(noticeS / speed).toFixed(2)} s; at most ${noticeS / MIN_WALL_NOTICE_S}× for this trace`)
  }
  const spanS = Math.min(trace.spanS, (options.hours ?? Infinity) * 3600)
  if (spanS / speed > MAX_WALL_S) {
    throw new InputError(`replaying ${(spanS / 3600).toFixed(1)} h of ${trace.name} at ${speed}× would take ${(spanS / speed / 3600).toFixed(1)} h; at most ${MAX_WALL_S / 3600} h (raise --speed or replay the first --hours)`)
  }
  const window = trace.instances
    .filter((i) => i.addS < spanS)
    .map((i): SpotInstance => (i.removeS !== undefined && i.removeS <= spanS ? i : { id: i.id, zone: i.zone, addS: i.addS }))
  const removed = window.filter((i) => i.removeS !== undefined).sort((a, b) => (a.removeS as number) - (b.removeS as number) || a.addS - b.addS)
  const alive = new AliveCount(window, spanS)
  const chosen = new Set<SpotInstance>()
  for (const instance of removed) {
    if (alive.fits(instance, maxInstances - 1)) chosen.add(instance)
  }
  for (const instance of window) {
    if (!chosen.has(instance) && alive.fits(instance, maxInstances)) chosen.add(instance)
  }
  const played = window.filter((i) => chosen.has(i)).map((i): PlayedInstance => ({
    id: i.id,
    zone: i.zone,
    addS: i.addS,
    ...(i.removeS !== undefined && { removeS: i.removeS, noticeAtS: Math.max(i.addS, i.removeS - noticeS) })
  }))
  return {
    trace,
    speed,
    maxInstances,
    spanS,
    noticeS,
    played,
    inTrace: { instances: window.length, removals: removals({ instances: window }), peak: peakOffered({ instances: window }) },
    peakPlayed: peakOffered({ instances: played })
  }
}

/** How many chosen instances are alive in each stretch between two of the trace's moments. */
class AliveCount {
  private readonly times: number[]
  private readonly counts: Int32Array

  constructor (instances: readonly SpotInstance[], private readonly spanS: number) {
    this.times = [...new Set([0, spanS, ...instances.flatMap((i) => [i.addS, i.removeS ?? spanS])])].sort((a, b) => a - b)
    this.counts = new Int32Array(this.times.length)
  }

  /** Takes the instance when, over its whole life, fewer than `limit` chosen ones are alive. */
  fits (instance: SpotInstance, limit: number): boolean {
    const from = this.index(instance.addS)
    const to = this.index(instance.removeS ?? this.spanS)
    for (let i = from; i < to; i++) if (this.counts[i] >= limit) return false
    for (let i = from; i < to; i++) this.counts[i]++
    return true
  }

  private index (t: number): number {
    let lo = 0
    let hi = this.times.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.times[mid] < t) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}
