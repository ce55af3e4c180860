import type { SimulationResult } from './engine.js'
import { describeShape, type FleetShape, type Settings } from './fleet.js'
import type { ShapeRow } from './shapes.js'
import { peakOffered, removals, type Trace } from './trace.js'

// What `npm run simulate` prints and writes with --json (README, "What does spot save?": the
// required fields, plus what was counted to reach them).

export interface SimulationReport {
  readonly trace: { name: string, hours: number, cloud: string, zone: string | null, instances: number, removals: number, peakOffered: number }
  readonly fleet: { spot: number | 'all', onDemand: number, policy: string, replicasNeeded: number, rps: number, capacityRps: number }
  readonly settings: { noticeS: number, coldStartS: number, replayDelayS: number, drainMarginS: number, leaseTtlS: number, maxQueue: number }
  readonly prices: { spot: number | Record<string, number>, onDemand: number, unit: string }
  readonly cost: { spot: number, onDemand: number, total: number, allOnDemand: number }
  readonly saving: number
  readonly availability: number
  readonly spotHours: number
  readonly onDemandHours: number
  readonly requests: { offered: number, served: number, delayed: number, lost: number, replayed: number }
  readonly addedLatencyS: { p50: number, p99: number, p999: number, max: number }
  readonly counted: SimulationResult['counted']
}

const round = (value: number, digits = 4): number => Math.round(value * 10 ** digits) / 10 ** digits

export function toReport (trace: Trace, zone: string | undefined, shape: FleetShape, settings: Settings, result: SimulationResult): SimulationReport {
  const offered = Math.round(result.requests.offered)
  const lost = Math.round(result.requests.lost)
  const spotPrices = [...trace.prices.spot.values()]
  const counted = Object.fromEntries(Object.entries(result.counted).map(([key, value]) => [key, round(value)])) as SimulationResult['counted']
  return {
    trace: { name: trace.name, hours: round(result.hours), cloud: trace.cloud, zone: zone ?? null, instances: trace.instances.length, removals: removals(trace), peakOffered: peakOffered(trace) },
    fleet: { spot: shape.spot === Infinity ? 'all' : shape.spot, onDemand: shape.onDemand, policy: shape.policy, replicasNeeded: result.replicasNeeded, rps: settings.rps, capacityRps: settings.capacityRps },
    settings: { noticeS: settings.noticeS, coldStartS: settings.coldStartS, replayDelayS: settings.replayDelayS, drainMarginS: settings.drainMarginS, leaseTtlS: settings.leaseTtlS, maxQueue: settings.queuePerReplica },
    prices: {
      spot: new Set(spotPrices).size === 1 ? round(spotPrices[0]) : Object.fromEntries([...trace.prices.spot].map(([z, p]) => [z, round(p)])),
      onDemand: round(trace.prices.onDemand),
      unit: trace.prices.unit
    },
    cost: { spot: round(result.cost.spot, 2), onDemand: round(result.cost.onDemand, 2), total: round(result.cost.total, 2), allOnDemand: round(result.cost.allOnDemand, 2) },
    saving: round(result.saving, 6),
    availability: round(result.availability, 6),
    spotHours: round(result.spotHours),
    onDemandHours: round(result.onDemandHours),
    requests: { offered, served: offered - lost, delayed: Math.min(offered - lost, Math.round(result.requests.delayed)), lost, replayed: Math.round(result.requests.replayed) },
    addedLatencyS: { p50: round(result.addedLatencyS.p50, 3), p99: round(result.addedLatencyS.p99, 3), p999: round(result.addedLatencyS.p999, 3), max: round(result.addedLatencyS.max, 3) },
    counted
  }
}

const int = (value: number): string => Math.round(value).toLocaleString('en-US')
const money = (value: number): string => value.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })
const pct = (share: number, digits = 1): string => `${(Math.abs(share) < 5 * 10 ** -(digits + 3) ? 0 : share * 100).toFixed(digits)} %`
const hours = (value: number): string => `${value.toFixed(value < 10 ? 2 : 1)} h`
const seconds = (value: number): string => (value === 0 ? '0' : value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(1)} s`)

export function formatReport (report: SimulationReport, description: string): string {
  const { trace, fleet, settings, prices, cost, requests, counted } = report
  const spotPrice = typeof prices.spot === 'number' ? String(prices.spot) : `${Math.min(...Object.values(prices.spot))}–${Math.max(...Object.values(prices.spot))} by zone`
  const rows: Array<[string, string]> = [
    ['trace', `${trace.name}${trace.zone === null ? '' : ` zone ${trace.zone}`}: ${description}; ${hours(trace.hours)}, ${trace.instances} spot instances, ${trace.removals} taken back, at most ${trace.peakOffered} at once`],
    ['fleet', `${describeShape({ spot: fleet.spot === 'all' ? Infinity : fleet.spot, onDemand: fleet.onDemand, policy: fleet.policy as FleetShape['policy'] })} (spot held: at most what the trace offers)`],
    ['load', `${int(fleet.rps)} req/s; ${int(fleet.capacityRps)} req/s per replica: ${fleet.replicasNeeded} replicas needed`],
    ['timing', `${settings.noticeS} s notice (${trace.cloud}), ${settings.coldStartS} s cold start (billed, not serving), replay ${settings.replayDelayS} s after a hand-off, drain ends ${settings.drainMarginS} s before the deadline, ${settings.maxQueue} queued per replica`],
    ['prices', `spot ${spotPrice}, on-demand ${prices.onDemand} ${prices.unit}`],
    ['cost', `spot ${money(cost.spot)} + on-demand ${money(cost.onDemand)} = ${money(cost.total)}, against ${money(cost.allOnDemand)} for ${fleet.replicasNeeded} on-demand replicas: saving ${pct(report.saving)}`],
    ['availability', `${pct(report.availability, 2)} of the time the serving replicas covered the load (${hours(counted.shortHours)} replica-hours short)`],
    ['requests', `${int(requests.offered)} offered; ${int(requests.served)} served, ${int(requests.delayed)} of them delayed (${int(requests.replayed)} replayed after a hand-off); ${int(requests.lost)} lost (refused: no serving replica or queues full)`],
    ['added latency', `p50 ${seconds(report.addedLatencyS.p50)}, p99 ${seconds(report.addedLatencyS.p99)}, p99.9 ${seconds(report.addedLatencyS.p999)}, max ${seconds(report.addedLatencyS.max)}`],
    ['counted', `spot ${hours(report.spotHours)}, on-demand ${hours(report.onDemandHours)} (fallback ${hours(counted.fallbackHours)}, ${counted.fallbackLaunches} launches); ${counted.spotLaunches} spot launches, ${counted.preemptions} preemptions`],
    ['', `billed and not serving: ${hours(counted.coldStartHours)} cold starts, ${hours(counted.drainingHours)} draining after notices; serving beyond the load: ${hours(counted.beyondLoadHours)}`]
  ]
  const width = Math.max(...rows.map(([label]) => label.length))
  return rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`).join('\n')
}

export function formatComparison (rows: readonly ShapeRow[], chosen: FleetShape): string {
  const same = (a: FleetShape, b: FleetShape): boolean => a.spot === b.spot && a.onDemand === b.onDemand && a.policy === b.policy
  const header = ['fleet shape', 'spot h', 'on-demand h', 'cost', 'saving', 'availability', 'delayed', 'lost', 'p99 added']
  const table = rows.map(({ label, shape, result }) => [
    `${same(shape, chosen) ? '* ' : '  '}${label}`,
    result.spotHours.toFixed(1),
    result.onDemandHours.toFixed(1),
    money(result.cost.total),
    pct(result.saving),
    pct(result.availability, 2),
    int(result.requests.delayed),
    int(result.requests.lost),
    seconds(result.addedLatencyS.p99)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)))
  const line = (cells: readonly string[]): string => `  ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')}`
  return [line(header), ...table.map(line)].join('\n')
}
