import { simulate, type SimulationResult } from './engine.js'
import { describeShape, replicasNeeded, type FleetShape, type Settings } from './fleet.js'
import type { Trace } from './trace.js'

// The fleet shapes worth comparing for one load (n = replicas the load needs): spot
// only; over-provisioned by one spot replica; a fixed on-demand baseline of one; spot
// with on-demand fallback; over-provisioned with fallback (what SkyServe/SpotHedge
// runs); and the all-on-demand fleet every saving is measured against.

export interface ShapeRow {
  readonly label: string
  readonly shape: FleetShape
  readonly result: SimulationResult
}

export function standardShapes (settings: Pick<Settings, 'rps' | 'capacityRps'>): Array<{ label: string, shape: FleetShape }> {
  const n = replicasNeeded(settings)
  const shapes: FleetShape[] = [
    { spot: n, onDemand: 0, policy: 'fixed' },
    { spot: n + 1, onDemand: 0, policy: 'fixed' },
    ...(n >= 2 ? [{ spot: n - 1, onDemand: 1, policy: 'fixed' } as const] : []),
    { spot: n, onDemand: 0, policy: 'fallback' },
    { spot: n + 1, onDemand: 0, policy: 'fallback' },
    { spot: 0, onDemand: n, policy: 'fixed' }
  ]
  return shapes.map((shape) => ({ label: shape.spot === 0 ? `${n} on-demand (the reference)` : describeShape(shape), shape }))
}

export function compareShapes (trace: Trace, settings: Settings): ShapeRow[] {
  return standardShapes(settings).map(({ label, shape }) => ({ label, shape, result: simulate({ trace, shape, settings }) }))
}
