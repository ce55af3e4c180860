// A spot trace as the simulator and the replay see it, whatever file it came from:
// the spot instances the cloud offered, each with when it became available and when
// the cloud took it back, and the prices that go with them.

export type Cloud = 'aws' | 'gcp' | 'azure'

/** Seconds of interruption notice each cloud gives (platform facts: AWS 2 minutes, GCP and Azure 30 s). */
export const NOTICE_S: Readonly<Record<Cloud, number>> = { aws: 120, gcp: 30, azure: 30 }

export interface SpotInstance {
  readonly id: string
  /** The zone it ran in; '' for a trace of one pool. */
  readonly zone: string
  /** Seconds from the start of the trace when it became available. */
  readonly addS: number
  /** Seconds from the start when the cloud took it back; undefined: still running at the end. */
  readonly removeS?: number
}

export interface Prices {
  /** Spot price per replica-hour in each zone ('' for a trace of one pool). */
  readonly spot: ReadonlyMap<string, number>
  /** On-demand price per replica-hour, for the on-demand replicas and the all-on-demand fleet. */
  readonly onDemand: number
  /** What one replica is and where the figures come from, e.g. `USD/h per g4dn.12xlarge (SpotServe §6.2)`. */
  readonly unit: string
}

export interface Trace {
  /** The shipped name or the file it was read from. */
  readonly name: string
  readonly description: string
  readonly cloud: Cloud
  /** Seconds from the first event to the end of the trace. */
  readonly spanS: number
  /** In order of `addS`, then of appearance in the file. */
  readonly instances: readonly SpotInstance[]
  /** Zones the trace has, in order; empty for a trace of one pool. */
  readonly zones: readonly string[]
  readonly prices: Prices
}

export function traceHours (trace: Trace): number {
  return trace.spanS / 3600
}

/** The largest number of spot instances the trace offers at once. */
export function peakOffered (trace: Pick<Trace, 'instances'>): number {
  const changes: Array<[number, number]> = []
  for (const instance of trace.instances) {
    changes.push([instance.addS, 1])
    if (instance.removeS !== undefined) changes.push([instance.removeS, -1])
  }
  // Removals first at equal times: an instance taken back as another arrives is not both alive.
  changes.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let alive = 0
  let peak = 0
  for (const [, delta] of changes) {
    alive += delta
    peak = Math.max(peak, alive)
  }
  return peak
}

export function removals (trace: Pick<Trace, 'instances'>): number {
  return trace.instances.filter((i) => i.removeS !== undefined).length
}
