import type { SimulationResult, TimelinePoint } from './engine.js'
import type { Settings } from './fleet.js'
import type { SimulationReport } from './report.js'
import type { Trace } from './trace.js'

// A hand-written SVG (as bench/chart.ts draws the bench's) of one simulated fleet over
// its trace: above, the spot instances the trace offers, the replicas held and serving
// and the load in replicas; below, what the fleet has cost so far against the
// all-on-demand fleet.

const WIDTH = 1040
const LEFT = 70
const RIGHT = 200
const PLOT = WIDTH - LEFT - RIGHT
const TOP_HEIGHT = 260
const COST_HEIGHT = 170
const GREY = '#9e9e9e'
const BLUE = '#1565c0'
const GREEN = '#2e7d32'
const ORANGE = '#ef6c00'
const RED = '#c62828'

const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const text = (x: number, y: number, content: string, attrs = ''): string => `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${escape(content)}</text>`

/** A step function as an SVG path: each value holds until the next point. */
function steps (points: ReadonlyArray<{ t: number, v: number }>, x: (t: number) => number, y: (v: number) => number, endT: number): string {
  if (points.length === 0) return ''
  const parts = [`M${x(points[0].t).toFixed(1)},${y(points[0].v).toFixed(1)}`]
  for (let i = 1; i < points.length; i++) parts.push(`H${x(points[i].t).toFixed(1)}V${y(points[i].v).toFixed(1)}`)
  parts.push(`H${x(endT).toFixed(1)}`)
  return parts.join('')
}

function niceStep (range: number, target: number): number {
  const raw = range / target
  const power = 10 ** Math.floor(Math.log10(raw))
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? power * 10
}

function axes (top: number, height: number, maxY: number, yLabel: string, spanH: number, y: (v: number) => number, x: (t: number) => number, format: (v: number) => string): string[] {
  const parts = [`<rect x="${LEFT}" y="${top}" width="${PLOT}" height="${height}" fill="none" stroke="#bbb"/>`]
  const yStep = niceStep(maxY, 5)
  for (let v = 0; v <= maxY + 1e-9; v += yStep) {
    parts.push(`<line x1="${LEFT}" x2="${LEFT + PLOT}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#eee"/>`, text(LEFT - 6, y(v) + 4, format(v), 'text-anchor="end" font-size="11"'))
  }
  const xStep = niceStep(spanH, 10)
  for (let h = 0; h <= spanH + 1e-9; h += xStep) {
    parts.push(text(x(h * 3600), top + height + 14, `${Number(h.toFixed(2))} h`, 'text-anchor="middle" font-size="11"'))
  }
  parts.push(text(16, top + height / 2, yLabel, `transform="rotate(-90 16 ${top + height / 2})" text-anchor="middle" font-size="12"`))
  return parts
}

function legend (x: number, y: number, entries: ReadonlyArray<[string, string, string?]>): string[] {
  return entries.flatMap(([color, label, dash], i) => [
    `<line x1="${x}" x2="${x + 22}" y1="${y + i * 18}" y2="${y + i * 18}" stroke="${color}" stroke-width="2"${dash === undefined ? '' : ` stroke-dasharray="${dash}"`}/>`,
    text(x + 28, y + i * 18 + 4, label, 'font-size="12"')
  ])
}

export function renderTimeline (trace: Trace, settings: Settings, report: SimulationReport, result: SimulationResult): string {
  const timeline: readonly TimelinePoint[] = result.timeline ?? []
  const spanS = trace.spanS
  const spanH = spanS / 3600
  const x = (t: number): number => LEFT + (t / spanS) * PLOT
  const parts: string[] = []
  const fleet = `${report.fleet.spot === 'all' ? 'all offered' : report.fleet.spot} spot + ${report.fleet.onDemand} on-demand, ${report.fleet.policy}`
  parts.push(text(20, 24, `${trace.name}: ${fleet}; ${settings.rps} req/s at ${settings.capacityRps} req/s per replica (${report.fleet.replicasNeeded} needed); ${settings.noticeS} s notice, ${settings.coldStartS} s cold start`, 'font-size="14" font-weight="bold"'))

  // Replicas.
  const top = 44
  const load = settings.rps / settings.capacityRps
  const maxReplicas = Math.max(load, ...timeline.map((p) => Math.max(p.offered, p.spot + p.onDemand))) * 1.08
  const y = (v: number): number => top + TOP_HEIGHT - (v / maxReplicas) * TOP_HEIGHT
  parts.push(...axes(top, TOP_HEIGHT, maxReplicas, 'replicas', spanH, y, x, (v) => String(Math.round(v))))
  const series = (pick: (p: TimelinePoint) => number): Array<{ t: number, v: number }> => timeline.map((p) => ({ t: p.atS, v: pick(p) }))
  parts.push(
    `<path d="${steps(series((p) => p.offered), x, y, spanS)}" fill="none" stroke="${GREY}" stroke-width="1.5"/>`,
    `<path d="${steps(series((p) => p.spot), x, y, spanS)}" fill="none" stroke="${BLUE}" stroke-width="1.5"/>`,
    `<path d="${steps(series((p) => p.onDemand), x, y, spanS)}" fill="none" stroke="${ORANGE}" stroke-width="1.5"/>`,
    `<path d="${steps(series((p) => p.ready), x, y, spanS)}" fill="none" stroke="${GREEN}" stroke-width="2"/>`,
    `<line x1="${LEFT}" x2="${LEFT + PLOT}" y1="${y(load).toFixed(1)}" y2="${y(load).toFixed(1)}" stroke="${RED}" stroke-width="1.5" stroke-dasharray="6 3"/>`
  )
  parts.push(...legend(LEFT + PLOT + 16, top + 10, [
    [GREY, 'spot the trace offers'],
    [BLUE, 'spot held (billed)'],
    [ORANGE, 'on-demand held'],
    [GREEN, 'replicas serving'],
    [RED, 'load, in replicas', '6 3']
  ]))
  parts.push(text(LEFT + PLOT + 16, top + 118, `availability ${(report.availability * 100).toFixed(2)} %`, 'font-size="12"'))

  // Cost so far.
  const costTop = top + TOP_HEIGHT + 50
  const cumulative: Array<{ t: number, v: number }> = []
  let spent = 0
  timeline.forEach((p, i) => {
    cumulative.push({ t: p.atS, v: spent })
    spent += p.costPerHour * ((timeline[i + 1]?.atS ?? spanS) - p.atS) / 3600
  })
  cumulative.push({ t: spanS, v: spent })
  const allOnDemand = report.cost.allOnDemand
  const maxCost = Math.max(allOnDemand, spent) * 1.08
  const yc = (v: number): number => costTop + COST_HEIGHT - (v / maxCost) * COST_HEIGHT
  const currency = /^([A-Z]{3})\//.exec(trace.prices.unit)?.[1]
  parts.push(...axes(costTop, COST_HEIGHT, maxCost, `cost so far${currency === undefined ? '' : ` (${currency})`}`, spanH, yc, x, (v) => String(Math.round(v))))
  parts.push(
    `<path d="${cumulative.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.t).toFixed(1)},${yc(p.v).toFixed(1)}`).join('')}" fill="none" stroke="${BLUE}" stroke-width="2"/>`,
    `<line x1="${x(0)}" y1="${yc(0).toFixed(1)}" x2="${x(spanS).toFixed(1)}" y2="${yc(allOnDemand).toFixed(1)}" stroke="${GREY}" stroke-width="2" stroke-dasharray="6 3"/>`
  )
  parts.push(...legend(LEFT + PLOT + 16, costTop + 10, [
    [BLUE, 'this fleet, so far'],
    [GREY, `${report.fleet.replicasNeeded} on-demand replicas`, '6 3']
  ]))
  parts.push(
    text(LEFT + PLOT + 16, costTop + 60, `${report.cost.total.toFixed(2)} vs ${allOnDemand.toFixed(2)}`, 'font-size="12"'),
    text(LEFT + PLOT + 16, costTop + 78, `saving ${(report.saving * 100).toFixed(1)} %`, 'font-size="12" font-weight="bold"')
  )
  const height = costTop + COST_HEIGHT + 40
  parts.push(text(20, height - 10, `spotgate simulate; prices ${trace.prices.unit}; spot billed from launch to the cloud's removal, cold starts and drains included`, 'font-size="11" fill="#555"'))
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="13">`,
    '<rect width="100%" height="100%" fill="#fff"/>',
    ...parts,
    '</svg>',
    ''
  ].join('\n')
}
