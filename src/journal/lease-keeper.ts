import type { Logger } from 'pino'
import type { Metrics } from '../metrics.js'
import type { LeaseStore } from './redis/fleet-store.js'

export interface LeaseKeeperOptions {
  readonly leaseTtlMs: number
  /** Requests owned in Redis but unknown to this process longer than this are handed to the fleet. */
  readonly orphanAfterMs: number
  readonly isLocallyActive: (id: string) => boolean
  /** Gives an orphaned request to the fleet (the request journal's hand-off). */
  readonly handOff: (id: string, reason: string) => Promise<void>
  readonly log: Logger
  readonly metrics: Metrics
}

/** Hand-offs the reconciliation examines per pass; the rest wait for the next pass. */
const RECONCILE_BATCH = 100

/**
 * Keeps this instance's lease alive, takes over the work of instances whose lease
 * expired (killed without notice, or cut off from Redis for longer than the TTL), and
 * re-queues handed-off requests whose replay entry was lost.
 */
export class LeaseKeeper {
  private renewTimer: NodeJS.Timeout | undefined
  private reapTimer: NodeJS.Timeout | undefined
  private reconcileTimer: NodeJS.Timeout | undefined
  private renewing: Promise<void> | undefined

  private readonly leaseTtlMs: number
  private readonly log: Logger
  private readonly metrics: Metrics

  constructor (private readonly store: LeaseStore, private readonly options: LeaseKeeperOptions) {
    this.leaseTtlMs = options.leaseTtlMs
    this.log = options.log
    this.metrics = options.metrics
  }

  start (): void {
    void this.renew()
    this.renewTimer = setInterval(() => { void this.renew() }, Math.max(100, Math.floor(this.leaseTtlMs / 3)))
    this.reapTimer = setInterval(() => { void this.reap() }, Math.max(100, Math.floor(this.leaseTtlMs / 2)))
    this.reconcileTimer = setInterval(() => { void this.reconcile() }, reconcileIntervalMs(this.leaseTtlMs))
  }

  /** Stops renewing and hands whatever this instance still owns to the fleet at once. */
  async release (): Promise<void> {
    this.stop()
    // A renewal already sent would otherwise land after the release and extend the lease.
    await this.renewing
    try {
      const moved = await this.store.releaseLease()
      this.log.info({ requests: moved }, 'lease released')
    } catch (error) {
      this.log.warn({ err: error }, 'could not release the lease; peers take over once it expires')
    }
  }

  stop (): void {
    clearInterval(this.renewTimer)
    clearInterval(this.reapTimer)
    clearInterval(this.reconcileTimer)
  }

  private renew (): Promise<void> {
    this.renewing = this.renewOnce()
    return this.renewing
  }

  private async renewOnce (): Promise<void> {
    if (this.store.unavailableReason() !== undefined) return
    try {
      if (!await this.store.renewLease()) {
        this.metrics.leaseLost.inc()
        this.log.warn('this instance\'s lease had expired: peers may have taken over its unfinished requests; results are first-write-wins, so each request still gets one answer')
      }
    } catch (error) {
      this.log.warn({ err: error }, 'lease renewal failed')
    }
  }

  private async reap (): Promise<void> {
    if (this.store.unavailableReason() !== undefined) return
    await this.releaseOrphans()
    try {
      const { instances, requests } = await this.store.reapDeadInstances()
      if (instances > 0) {
        this.metrics.leaseTakeovers.inc(instances)
        this.metrics.leaseTakeoverRequests.inc(requests)
        this.log.warn({ instances, requests }, 'took over the unfinished requests of instances whose lease expired')
      }
    } catch (error) {
      this.log.warn({ err: error }, 'lease take-over check failed')
    }
  }

  /**
   * An accept whose reply was lost (a timeout after the script ran) leaves a request
   * owned here that this process never ran: give it to the fleet.
   */
  private async releaseOrphans (): Promise<void> {
    try {
      const ids = await this.store.ownedBefore(Date.now() - this.options.orphanAfterMs)
      const orphans = ids.filter((id) => !this.options.isLocallyActive(id))
      if (orphans.length === 0) return
      await Promise.all(orphans.map((id) => this.options.handOff(id, 'orphaned')))
      this.metrics.handoffs.inc({ reason: 'orphaned' }, orphans.length)
      this.log.warn({ count: orphans.length }, 'handed off requests journaled here that this process was not running')
    } catch (error) {
      this.log.warn({ err: error }, 'orphan check failed')
    }
  }

  /** The safety net: a handed-off request whose replay entry is gone is queued again, so it is late at worst, never lost. */
  private async reconcile (): Promise<void> {
    if (this.store.unavailableReason() !== undefined) return
    try {
      const requeued = await this.store.reconcileHandOffs(reconcileAfterMs(this.leaseTtlMs), RECONCILE_BATCH)
      if (requeued.length === 0) return
      this.metrics.handoffs.inc({ reason: 'reconciled' }, requeued.length)
      this.log.warn({ count: requeued.length, requestIds: requeued.slice(0, 10) }, 'handed-off requests had lost their replay entry; queued them again')
    } catch (error) {
      this.log.warn({ err: error }, 'hand-off reconciliation failed')
    }
  }
}

/** How often each instance looks for handed-off requests that lost their replay entry. */
export function reconcileIntervalMs (leaseTtlMs: number): number {
  return leaseTtlMs
}

/** How long a hand-off must be without its entry before it is queued again. */
export function reconcileAfterMs (leaseTtlMs: number): number {
  return 2 * leaseTtlMs
}
