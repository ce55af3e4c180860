import { renderTimeline } from './chart.js'
import { simulate } from './engine.js'
import type { FleetShape, Settings } from './fleet.js'
import type { SimulateOptions } from './options.js'
import { formatComparison, formatReport, toReport, type SimulationReport } from './report.js'
import { compareShapes } from './shapes.js'
import { NOTICE_S } from './trace.js'
import { loadTrace, SHIPPED } from './traces/catalog.js'
import { replicasNeeded } from './fleet.js'

export interface SimulationRun {
  readonly report: SimulationReport
  readonly text: string
  /** The SVG chart of the chosen fleet over the trace. */
  readonly svg: () => string
}

/** Loads the trace, simulates the chosen fleet and the standard shapes for the same load. */
export function runSimulation (options: SimulateOptions): SimulationRun {
  const trace = loadTrace(options.trace, { zone: options.zone, spotPrice: options.priceSpot, onDemandPrice: options.priceOnDemand })
  const settings: Settings = { ...options.settings, noticeS: options.settings.noticeS ?? NOTICE_S[trace.cloud] }
  const shape: FleetShape = { ...options.shape, spot: options.spot ?? replicasNeeded(settings) }
  const result = simulate({ trace, shape, settings, timeline: options.svg !== undefined })
  const report = toReport(trace, options.zone, shape, settings, result)
  const description = SHIPPED[options.trace]?.description ?? trace.description
  const text = [
    `spotgate simulate: ${trace.name}`,
    formatReport(report, description),
    '',
    `  the same load on other fleet shapes (* the one above; saving against ${report.fleet.replicasNeeded} on-demand replicas):`,
    formatComparison(compareShapes(trace, settings), shape)
  ].join('\n')
  return { report, text, svg: () => renderTimeline(trace, settings, report, result) }
}
