import type { Logger } from 'pino'
import type { Metrics } from '../metrics.js'
import type { RedisJournal } from './redis-journal.js'

/**
 * Keeps this instance's lease alive and takes over the work of instances whose
 * lease expired (killed without notice, or cut off from Redis for longer than the TTL).
 */
export interface LeaseKeeperOptions {
  readonly leaseTtlMs: number
  /** Requests owned in Redis but unknown to this process longer than this are handed to the fleet. */
  readonly orphanAfterMs: number
  readonly isLocallyActive: (id: string) => boolean
  readonly log: Logger
  readonly metrics: Metrics
}

export class LeaseKeeper {
  private renewTimer: NodeJS.Timeout | undefined
  private reapTimer: NodeJS.Timeout | undefined
  private held = false
  private renewing: Promise<void> | undefined

  private readonly leaseTtlMs: number
  private readonly log: Logger
  private readonly metrics: Metrics

  constructor (private readonly journal: RedisJournal, private readonly options: LeaseKeeperOptions) {
    this.leaseTtlMs = options.leaseTtlMs
    this.log = options.log
    this.metrics = options.metrics
  }

  start (): void {
    void this.renew()
    this.renewTimer = setInterval(() => { void this.renew() }, Math.max(100, Math.floor(this.leaseTtlMs / 3)))
    this.reapTimer = setInterval(() => { void this.reap() }, Math.max(100, Math.floor(this.leaseTtlMs / 2)))
  }

  /** Stops renewing and hands whatever this instance still owns to the fleet at once. */
  async release (): Promise<void> {
    this.stop()
    // A renewal already sent would otherwise land after the release and extend the lease.
    await this.renewing
    try {
      const moved = await this.journal.releaseLease()
      this.log.info({ requests: moved }, 'lease released')
    } catch (error) {
      this.log.warn({ err: error }, 'could not release the lease; peers take over once it expires')
    }
  }

  stop (): void {
    clearInterval(this.renewTimer)
    clearInterval(this.reapTimer)
  }

  private renew (): Promise<void> {
    this.renewing = this.renewOnce()
    return this.renewing
  }

  private async renewOnce (): Promise<void> {
    if (this.journal.unavailableReason() !== undefined) return
    try {
      const wasValid = await this.journal.renewLease()
      // Any accept created a lease for this instance, so a missing one means peers took its work.
      if ((this.held || this.journal.hasAccepted) && !wasValid) {
        this.metrics.leaseLost.inc()
        this.log.warn('this instance\'s lease had expired: peers may have taken over its unfinished requests; results are first-write-wins, so each request still gets one answer')
      }
      this.held = true
    } catch (error) {
      this.log.warn({ err: error }, 'lease renewal failed')
    }
  }

  private async reap (): Promise<void> {
    if (this.journal.unavailableReason() !== undefined) return
    await this.releaseOrphans()
    try {
      const { instances, requests } = await this.journal.reapDeadInstances()
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
      const ids = await this.journal.ownedBefore(Date.now() - this.options.orphanAfterMs)
      const orphans = ids.filter((id) => !this.options.isLocallyActive(id))
      if (orphans.length === 0) return
      await Promise.all(orphans.map((id) => this.journal.handOff({ id, reason: 'orphaned' })))
      this.metrics.handoffs.inc({ reason: 'orphaned' }, orphans.length)
      this.log.warn({ count: orphans.length }, 'handed off requests journaled here that this process was not running')
    } catch (error) {
      this.log.warn({ err: error }, 'orphan check failed')
    }
  }
}
