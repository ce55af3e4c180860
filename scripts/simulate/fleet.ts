// What a fleet is made of and how the simulator is told to run it.

export type Policy = 'fixed' | 'fallback'

export const POLICIES: readonly Policy[] = ['fixed', 'fallback']

export interface FleetShape {
  /** Spot replicas to hold at most (Infinity: every instance the trace offers). */
  readonly spot: number
  /** On-demand replicas running all the time. */
  readonly onDemand: number
  /**
   * `fixed`: nothing else. `fallback`: when the spot replicas (with the fixed on-demand
   * ones) fall short of the load because the trace offers no more spot, launch on-demand
   * replicas for the difference, and release them once spot replicas serve again
   * (SkyServe's dynamic on-demand fallback).
   */
  readonly policy: Policy
}

export interface Settings {
  /** Offered load, requests per second, constant. */
  readonly rps: number
  /** Requests per second one replica serves. */
  readonly capacityRps: number
  /** Interruption notice; 0: instances are killed without one. */
  readonly noticeS: number
  /** From launch (billed) to serving. */
  readonly coldStartS: number
  /** From a hand-off to the replayed request joining a survivor's queue. */
  readonly replayDelayS: number
  /** spotgate's DRAIN_SAFETY_MARGIN_MS: the drain ends this long before the notice's deadline. */
  readonly drainMarginS: number
  /** spotgate's LEASE_TTL_MS: a killed instance's work is taken over after it. */
  readonly leaseTtlS: number
  /** spotgate's MAX_QUEUE_SIZE: requests one replica queues before it refuses more. */
  readonly queuePerReplica: number
}

/** Replicas the load needs: ⌈rps ÷ capacity⌉. */
export function replicasNeeded (settings: Pick<Settings, 'rps' | 'capacityRps'>): number {
  return Math.max(1, Math.ceil(settings.rps / settings.capacityRps - 1e-9))
}

export function describeShape (shape: FleetShape): string {
  const spot = shape.spot === Infinity ? 'all offered spot' : `${shape.spot} spot`
  const onDemand = shape.onDemand > 0 ? ` + ${shape.onDemand} on-demand` : ''
  return `${spot}${onDemand}${shape.policy === 'fallback' ? ', on-demand fallback' : ''}`
}
