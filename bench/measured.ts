import type { EchoCeiling, OrtCeiling } from './ceilings.js'
import type { ScenarioResult } from './end-to-end.js'

// Everything one bench run measured, and the look-ups the report and the targets share.

export interface Measured {
  readonly echo: EchoCeiling
  /** Every layout measured; the best per model and batch is the ceiling. */
  readonly ort: readonly OrtCeiling[]
  readonly scenarios: readonly ScenarioResult[]
}

/** The fastest onnxruntime run of `model` (at `batch`, or at any batch size measured), in rows per second. */
export function bestOrt (ort: readonly OrtCeiling[], model: string, batch?: number): OrtCeiling | undefined {
  const candidates = ort.filter((o) => o.model === model && (batch === undefined || o.batch === batch))
  return candidates.length === 0 ? undefined : candidates.reduce((a, b) => (b.rowsPerSecond > a.rowsPerSecond ? b : a))
}

export function scenarioOf (measured: Measured, id: string): ScenarioResult | undefined {
  return measured.scenarios.find((s) => s.id === id)
}

/** CPU time per answered request, in µs, from a share of one core (percent) and a rate. */
export function microsPerRequest (percent: number | undefined, requestsPerSecond: number): number | undefined {
  return percent === undefined || requestsPerSecond <= 0 ? undefined : (percent / 100) * 1e6 / requestsPerSecond
}
