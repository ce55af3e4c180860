import type { Logger } from 'pino'
import type { InferenceService } from '../inference-service.js'
import type { Journal } from '../journal/journal.js'
import type { Metrics } from '../metrics.js'
import type { Notice, NoticeSource } from './notices/notice.js'
import type { ServerState } from './server-state.js'

export interface DrainSettings {
  readonly drainGraceMs: number
  readonly drainTimeoutMs: number
  readonly drainSafetyMarginMs: number
}

export interface DrainDeps {
  readonly settings: DrainSettings
  readonly state: ServerState
  readonly service: InferenceService
  readonly journal: Journal
  readonly sources: readonly NoticeSource[]
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

  get deadlineAt (): number | undefined {
    return Number.isFinite(this.deadline) ? this.deadline : undefined
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

    if (journal.peersCanReplay) {
      const queued = service.handOff('queued', 'drain')
      if (queued > 0) log.info({ count: queued, ms: since() }, 'queued requests handed off')
    }

    // Keep serving while the load balancer notices the failing readiness check.
    const grace = wasServing ? Math.min(settings.drainGraceMs, Math.max(0, deadline - Date.now())) : 0
    if (grace > 0) await Promise.race([new Promise((resolve) => setTimeout(resolve, grace)), deadlineReached])
    state.stopAcceptingRequests()
    this.listenerClosing = this.deps.closeListener().catch((error: Error) => log.warn({ err: error }, 'closing the listener failed'))
    log.info({ ms: since(), inflight: service.activeCount }, 'listener closed; new requests get 503')

    const ending = await Promise.race([service.whenIdle().then(() => 'idle' as const), deadlineReached])
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
    await Promise.race([this.listenerClosing, new Promise((resolve) => setTimeout(resolve, FLUSH_MS))])
    state.enter('stopped')
    // Signal handlers stay: a signal now must not fall back to Node's default (exit 143).
    const stoppable = sources.filter((source) => source.name !== 'sigterm' && source.name !== 'sigint')
    await Promise.allSettled(stoppable.map(async (source) => { await source.drained?.(); await source.stop() }))
    await this.deps.shutdown().catch((error: Error) => log.error({ err: error }, 'shutdown step failed'))
    log.info({ ms: since() }, 'drained; exiting')
    this.deps.exit(0)
  }
}
