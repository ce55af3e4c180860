import type { Logger } from 'pino'
import type { ModelDrainPlan } from '../inference-service.js'
import type { Metrics } from '../metrics.js'
import { withTimeout } from '../wait.js'
import type { Notice, NoticeSource } from './notices/notice.js'
import type { ServerState } from './server-state.js'

export interface DrainSettings {
  readonly drainGraceMs: number
  readonly drainTimeoutMs: number
  readonly drainSafetyMarginMs: number
}

/** What a drain needs of the inference service. */
export interface DrainTarget {
  /** Keeps the queued requests that can finish by `deadline` (epoch ms), hands off the rest. */
  planDrain: (deadline: number) => ModelDrainPlan[]
  /** Hands off every request this instance still holds (at the deadline). */
  handOff: (which: 'all', reason: string) => number
  whenIdle: () => Promise<void>
  readonly activeCount: number
}

/** What a drain needs of the batch worker: stop claiming, commit what finished, hand the rest back. */
export interface BatchDrainHook {
  handBack: () => Promise<void>
}

export interface DrainDeps {
  readonly settings: DrainSettings
  readonly state: ServerState
  readonly service: DrainTarget
  /** Whether handed-off requests reach a peer (a shared journal) or are lost with this process. */
  readonly journal: { readonly peersCanReplay: boolean }
  readonly sources: readonly NoticeSource[]
  /** Batch shards held here go back to the fleet at the notice, without using an attempt. */
  readonly batches?: BatchDrainHook
  readonly log: Logger
  readonly metrics: Metrics
  /** Stops the HTTP listener; resolves once open connections are done. */
  readonly closeListener: () => Promise<void>
  /** Releases the lease, closes the journal and the model workers. */
  readonly shutdown: () => Promise<void>
  readonly exit: (code: number) => void
}

/** Longest wait for open connections to flush their last replies before exit. */
const FLUSH_MS = 1000

/**
 * ready ──notice──▶ draining ──all finished or handed off──▶ stopped (exit 0).
 * A later notice only brings the deadline closer; a second signal hands off what is left and exits.
 */
export class Drain {
  private startedAt: number | undefined
  private deadline = Infinity
  private deadlineTimer: NodeJS.Timeout | undefined
  private reachDeadline: (() => void) | undefined
  private signals = 0
  private listenerClosing: Promise<void> | undefined
  private finishing = false

  constructor (private readonly deps: DrainDeps) {}

  /** Starts every source; each one's notices lead here. */
  watch (): void {
    for (const source of this.deps.sources) source.start((notice) => this.notify(notice))
  }

  notify (notice: Notice): void {
    const { log, metrics, settings } = this.deps
    const now = Date.now()
    metrics.notices.inc({ source: notice.source })
    const fromSignal = notice.source === 'sigterm' || notice.source === 'sigint'
    if (fromSignal) this.signals++
    const noticeDeadline = notice.deadline === undefined ? Infinity : notice.deadline - settings.drainSafetyMarginMs
    const deadline = Math.max(now, Math.min(noticeDeadline, now + settings.drainTimeoutMs))
    log.info({ source: notice.source, kind: notice.kind, noticeDeadline: notice.deadline && new Date(notice.deadline).toISOString(), description: notice.description }, 'preemption notice received')

    if (this.startedAt === undefined) {
      void this.run(deadline)
      return
    }
    if (fromSignal && this.signals >= 2) {
      log.warn('second signal during the drain: handing off what is left and exiting')
      this.setDeadline(now)
      return
    }
    if (deadline < this.deadline) {
      log.info({ deadline: new Date(deadline).toISOString() }, 'drain deadline moved closer')
      this.setDeadline(deadline)
      this.plan(deadline, 'deadline moved closer')
    }
  }

  /** Estimates, per model, what of its queue can finish by the deadline; hands off the rest and logs the decision. */
  private plan (deadline: number, why: string): void {
    const { service, journal, log } = this.deps
    for (const plan of service.planDrain(deadline)) {
      if (plan.queued === 0) continue
      log.info({ ...plan, runMs: plan.runMs === undefined ? null : Math.round(plan.runMs), why, deadline: new Date(deadline).toISOString() },
        journal.peersCanReplay
          ? `drain plan for ${plan.model}/${plan.version}: ${plan.kept} of ${plan.queued} queued requests finish here, ${plan.handedOff} handed off`
          : `drain plan for ${plan.model}/${plan.version}: ${plan.kept} of ${plan.queued} queued requests can finish before the deadline; without REDIS_URL none can be handed off`)
    }
  }

  private setDeadline (deadline: number): void {
    this.deadline = deadline
    clearTimeout(this.deadlineTimer)
    this.deadlineTimer = setTimeout(() => this.reachDeadline?.(), Math.max(0, deadline - Date.now()))
  }

  private async run (deadline: number): Promise<void> {
    const { state, service, journal, log, settings } = this.deps
    const startedAt = this.startedAt = Date.now()
    const since = (): number => Date.now() - startedAt
    const wasServing = state.phase === 'ready'
    const deadlineReached = new Promise<'deadline'>((resolve) => { this.reachDeadline = () => resolve('deadline') })
    this.setDeadline(deadline)

    state.enter('draining')
    log.info({ ms: since(), deadline: new Date(deadline).toISOString() }, 'readiness flipped to 503; draining')

    this.plan(deadline, 'notice')
    // Shards are handed back at once, not at the deadline: a peer can run them now, and a
    // shard is small enough that what finished here is committed well before the deadline.
    const handingBack = this.deps.batches?.handBack().catch((error: Error) => log.warn({ err: error }, 'handing batch shards back failed; peers take them over after the lease')) ?? Promise.resolve()

    // Keep serving while the load balancer notices the failing readiness check.
    const grace = wasServing ? Math.min(settings.drainGraceMs, Math.max(0, deadline - Date.now())) : 0
    if (grace > 0) await withTimeout(deadlineReached, grace)
    state.stopAcceptingRequests()
    this.listenerClosing = this.deps.closeListener().catch((error: Error) => log.warn({ err: error }, 'closing the listener failed'))
    log.info({ ms: since(), inflight: service.activeCount }, 'listener closed; new requests get 503')

    const ending = await Promise.race([Promise.all([service.whenIdle(), handingBack]).then(() => 'idle' as const), deadlineReached])
    if (ending === 'deadline' && service.activeCount > 0) {
      const reason = this.signals >= 2 ? 'signal' : 'deadline'
      const count = service.handOff('all', reason)
      if (journal.peersCanReplay) log.info({ count, reason, ms: since() }, 'unfinished requests handed off')
      else log.error({ count }, 'drain deadline reached with requests unfinished; without REDIS_URL no peer can finish them')
      await service.whenIdle()
    }
    await this.finish(since)
  }

  private async finish (since: () => number): Promise<void> {
    if (this.finishing) return
    this.finishing = true
    clearTimeout(this.deadlineTimer)
    const { log, state, sources } = this.deps
    await withTimeout(Promise.resolve(this.listenerClosing), FLUSH_MS)
    state.enter('stopped')
    // Signal handlers stay: a signal now must not fall back to Node's default (exit 143).
    const stoppable = sources.filter((source) => source.name !== 'sigterm' && source.name !== 'sigint')
    await Promise.allSettled(stoppable.map(async (source) => { await source.drained?.(); await source.stop() }))
    await this.deps.shutdown().catch((error: Error) => log.error({ err: error }, 'shutdown step failed'))
    log.info({ ms: since() }, 'drained; exiting')
    this.deps.exit(0)
  }
}
