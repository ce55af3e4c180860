import { InputError } from '../input-error.js'
import type { SpotInstance } from '../trace.js'
import { lines } from './spotserve.js'

// The SkyNomad artifact's GCP H100 capacity probes, as converted to one CSV:
//   scheduled_at,zone,instances_created_of_16,capacity_exhausted_detected
// Every probe asked each zone for 16 spot instances and recorded how many launched. It
// is a capacity trace, not a log of instances: a rise in a zone's count is read as new
// instances becoming available, a fall as the most recently added ones taken back
// (last in, first out), so at every moment the instances alive equal the probed count.
// Each probe's count holds until the next probe; the last one's for one probing period.

export const PROBES_HEADER = 'scheduled_at,zone,instances_created_of_16'

export interface ProbeTrace {
  readonly instances: SpotInstance[]
  readonly spanS: number
  readonly zones: string[]
  /** The probing period (the median gap between probes), seconds. */
  readonly periodS: number
}

/** Most instances one zone's probe may count: a fleet past this is a malformed file, not a trace. */
const MAX_PROBE_COUNT = 100_000

export function parseProbesCsv (text: string, file: string, zone?: string): ProbeTrace {
  const rows = lines(text)
  const header = rows.shift()
  if (header === undefined || !header.line.startsWith(PROBES_HEADER)) {
    throw new InputError(`${file}:1: expected the header "${PROBES_HEADER},..."`)
  }
  const ticks: Array<{ ms: number, counts: Map<string, number> }> = []
  const zones: string[] = []
  for (const { line, number } of rows) {
    const [at, zoneName, created] = line.split(',').map((f) => f.trim())
    const ms = Date.parse(at ?? '')
    if (!/^\d{4}-\d\d-\d\dT/.test(at ?? '') || Number.isNaN(ms)) throw new InputError(`${file}:${number}: bad timestamp ${JSON.stringify(at)} (expected an ISO 8601 date and time)`)
    if (zoneName === undefined || !/^[a-z0-9-]+$/.test(zoneName)) throw new InputError(`${file}:${number}: bad zone ${JSON.stringify(zoneName)}`)
    const count = Number(created)
    if (created === undefined || created === '' || !Number.isInteger(count) || count < 0 || count > MAX_PROBE_COUNT) throw new InputError(`${file}:${number}: bad instance count ${JSON.stringify(created)} (expected an integer from 0 to ${MAX_PROBE_COUNT})`)
    let tick = ticks.at(-1)
    if (tick === undefined || ms > tick.ms) {
      tick = { ms, counts: new Map() }
      ticks.push(tick)
    } else if (ms < tick.ms) {
      throw new InputError(`${file}:${number}: timestamp ${at} is before the previous probe's; probes must be in time order`)
    }
    if (tick.counts.has(zoneName)) throw new InputError(`${file}:${number}: zone ${zoneName} probed twice at ${at}`)
    tick.counts.set(zoneName, count)
    if (!zones.includes(zoneName)) zones.push(zoneName)
  }
  if (ticks.length < 2) throw new InputError(`${file}: fewer than two probes: no time to simulate`)
  if (zone !== undefined && !zones.includes(zone)) throw new InputError(`--zone: ${file} has no zone ${zone} (zones: ${zones.join(', ')})`)

  const gaps = ticks.slice(1).map((t, i) => t.ms - ticks[i].ms).sort((a, b) => a - b)
  const periodMs = gaps[Math.floor(gaps.length / 2)]
  const startMs = ticks[0].ms
  const seconds = (ms: number): number => (ms - startMs) / 1000
  const instances: Array<SpotInstance & { seq: number }> = []
  const chosen = zone === undefined ? zones : [zone]
  let seq = 0
  for (const z of chosen) {
    const alive: Array<SpotInstance & { seq: number }> = []
    let next = 0
    for (const tick of ticks) {
      const count = tick.counts.get(z)
      if (count === undefined) continue
      while (alive.length < count) alive.push({ id: `${z}#${++next}`, zone: z, addS: seconds(tick.ms), seq: seq++ })
      while (alive.length > count) {
        const gone = alive.pop() as SpotInstance & { seq: number }
        instances.push({ ...gone, removeS: seconds(tick.ms) })
      }
    }
    for (const instance of alive) instances.push(instance)
  }
  // In order of arrival, the first created first: the trace's order is its age.
  instances.sort((a, b) => a.addS - b.addS || a.seq - b.seq)
  return { instances: instances.map(({ seq: _, ...instance }) => instance), spanS: seconds(ticks[ticks.length - 1].ms + periodMs), zones: chosen, periodS: periodMs / 1000 }
}

export interface RegionPrice {
  readonly spot: number
  readonly onDemand: number
  /** GPUs of the priced machine type, e.g. 8 for a3-highgpu-8g. */
  readonly gpus: number
}

/**
 * The merged GCP price cache: `{"<region>_<machine type>.json": {"region", "machine_type",
 * "price", "on_demand_price", ...}}` in USD per machine-hour. Negative or missing prices are refused.
 */
export function parsePriceCache (text: string, file: string): Map<string, RegionPrice> {
  let cache: unknown
  try {
    cache = JSON.parse(text)
  } catch {
    throw new InputError(`${file}: not JSON`)
  }
  if (cache === null || typeof cache !== 'object' || Array.isArray(cache)) throw new InputError(`${file}: expected an object of price entries`)
  const prices = new Map<string, RegionPrice>()
  for (const [key, entry] of Object.entries(cache)) {
    const { region, machine_type: machine, price, on_demand_price: onDemand } = (entry ?? {}) as Record<string, unknown>
    if (typeof region !== 'string' || typeof machine !== 'string') throw new InputError(`${file}: ${key}: no region or machine_type`)
    for (const [name, value] of [['price', price], ['on_demand_price', onDemand]] as const) {
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new InputError(`${file}: ${key}: ${name} must be a price >= 0, got ${JSON.stringify(value)}`)
    }
    const gpus = Number(/-(\d+)g$/.exec(machine)?.[1] ?? 1)
    prices.set(region, { spot: price as number, onDemand: onDemand as number, gpus })
  }
  return prices
}

/** us-central1-a → us-central1. */
export function regionOf (zone: string): string {
  return zone.replace(/-[a-z]$/, '')
}
