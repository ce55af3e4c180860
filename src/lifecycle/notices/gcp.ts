import type { Logger } from 'pino'
import { Backoff, pause } from './backoff.js'
import type { CloudSourceOptions } from './cloud-source-options.js'
import { FailureLog } from './failure-log.js'
import { describeError, metadataRequest } from './metadata-request.js'
import type { Notice, NoticeSource } from './notice.js'
import { NoticeOutlet } from './notice-outlet.js'

export interface GcpNoticeSourceOptions extends CloudSourceOptions {
  /** `timeout_sec` of each long-poll. */
  readonly longPollTimeoutSec?: number
  /** HTTP timeout of a long-poll; default 10 s above timeout_sec, as Google's guest agent does. */
  readonly longPollRequestTimeoutMs?: number
  /** Time from the preemption notice to the hard power-off (ACPI soft-off, then 30 s). */
  readonly preemptionNoticeMs?: number
}

const FLAVOR = { 'Metadata-Flavor': 'Google' }

// A long-poll that comes back this fast with nothing new did not wait: a server that
// ignores wait_for_change, or a proxy in the way.
const QUICK_RETURN_MS = 1000
// Long-polls in a row that failed or did not wait before falling back to plain polling,
// and how long to poll before trying to long-poll again (the failures may have been a
// few 503s of a host maintenance).
const LONG_POLL_MISSES_BEFORE_POLLING = 3
const POLLING_BEFORE_LONG_POLL_RETRY_MS = 5 * 60_000

const PREEMPTED = new Set(['TRUE', 'FALSE'])
const TERMINATING_MAINTENANCE = new Set(['TERMINATE_ON_HOST_MAINTENANCE', 'SHUTDOWN_ON_HOST_MAINTENANCE'])
const HARMLESS_MAINTENANCE = new Set(['NONE', 'MIGRATE_ON_HOST_MAINTENANCE'])

/**
 * GCE metadata server: `instance/preempted` and `instance/maintenance-event`, each
 * watched with a long-poll (`wait_for_change` + ETag), falling back to polling
 * every pollIntervalMs where long-polling does not work.
 */
export class GcpNoticeSource implements NoticeSource {
  readonly name = 'gcp' as const
  private readonly stopping = new AbortController()
  private readonly log: Logger
  private readonly outlet: NoticeOutlet
  private readonly failures: FailureLog
  private readonly longPollTimeoutSec: number
  private readonly longPollRequestTimeoutMs: number
  private running: Promise<unknown> | undefined

  constructor (private readonly options: GcpNoticeSourceOptions) {
    this.log = options.log.child({ source: 'gcp' })
    this.outlet = new NoticeOutlet(this.log)
    this.failures = new FailureLog('gcp', this.log, options.metrics)
    this.longPollTimeoutSec = Math.max(1, Math.floor(options.longPollTimeoutSec ?? 60))
    this.longPollRequestTimeoutMs = options.longPollRequestTimeoutMs ?? (this.longPollTimeoutSec + 10) * 1000
  }

  start (emit: (notice: Notice) => void): void {
    if (this.running !== undefined || this.stopping.signal.aborted) return
    this.outlet.connect(emit)
    this.log.info({ url: this.options.baseUrl }, 'watching GCE metadata for preemption and host maintenance')
    this.running = Promise.all([
      this.watch('preempted', (value, previous) => this.onPreempted(value, previous)),
      this.watch('maintenance-event', (value, previous) => this.onMaintenanceEvent(value, previous))
    ]).catch((error: unknown) => {
      this.log.error({ err: error }, 'GCP notice source stopped unexpectedly')
    })
  }

  async stop (): Promise<void> {
    this.stopping.abort()
    await this.running
  }

  /** Follows one metadata value; `onValue` throws when the value is unparsable. */
  private async watch (key: string, onValue: (value: string, previous: string | undefined) => void): Promise<void> {
    const signal = this.stopping.signal
    const base = `${this.options.baseUrl}/computeMetadata/v1/instance/${key}`
    // Brief 503s happen during host maintenance; Google's advice is to retry after about a second.
    const backoff = new Backoff({ initialMs: 1000, maxMs: 5000, ...this.options.retry })
    let etag = '0'
    let value: string | undefined
    let longPolling = true
    let misses = 0
    let pollingSince = 0
    while (!signal.aborted) {
      if (!longPolling && Date.now() - pollingSince >= POLLING_BEFORE_LONG_POLL_RETRY_MS) {
        longPolling = true
        misses = 0
        this.log.info({ key }, 'trying to long-poll the metadata server again')
      }
      const startedAt = Date.now()
      let answered = false
      let waited = false
      let understood = false
      try {
        const response = await metadataRequest(longPolling
          ? `${base}?wait_for_change=true&last_etag=${encodeURIComponent(etag)}&timeout_sec=${this.longPollTimeoutSec}`
          : base, {
          headers: FLAVOR,
          timeoutMs: longPolling ? this.longPollRequestTimeoutMs : this.options.requestTimeoutMs ?? 3000,
          signal
        })
        if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
        if (response.headers.get('metadata-flavor') !== 'Google') throw new Error('answer without Metadata-Flavor: Google, not the metadata server')
        answered = true
        const nextEtag = response.headers.get('etag') ?? undefined
        // A long-poll that returns is not a change by itself (it also returns at timeout_sec).
        waited = (nextEtag !== undefined && nextEtag !== etag) || Date.now() - startedAt >= Math.min(QUICK_RETURN_MS, this.longPollTimeoutSec * 500)
        if (nextEtag !== undefined) etag = nextEtag
        const next = response.body.trim()
        onValue(next, value)
        value = next
        understood = true
      } catch (error) {
        if (signal.aborted) break
        this.failures.failure(`GCP ${key}`, describeError(error))
      }
      if (understood) {
        backoff.reset()
        this.failures.success()
      }
      if (longPolling) {
        misses = answered && waited ? 0 : misses + 1
        if (misses >= LONG_POLL_MISSES_BEFORE_POLLING) {
          longPolling = false
          pollingSince = Date.now()
          this.log.warn({ key, pollIntervalMs: this.options.pollIntervalMs }, 'long-polling the metadata server does not work; polling instead')
        }
        if (!understood) await pause(backoff.next(), signal)
        else if (!waited) await pause(this.options.pollIntervalMs, signal)
      } else {
        await pause(understood ? this.options.pollIntervalMs : backoff.next(), signal)
      }
    }
  }

  private onPreempted (value: string, previous: string | undefined): void {
    if (!PREEMPTED.has(value)) throw new Error(`unparsable preempted value: ${JSON.stringify(value.slice(0, 80))}`)
    if (value !== 'TRUE' || previous === 'TRUE') return
    this.outlet.deliver('preempted', {
      source: 'gcp',
      kind: 'preempted',
      deadline: Date.now() + (this.options.preemptionNoticeMs ?? 30_000),
      description: 'GCE instance preempted'
    })
  }

  private onMaintenanceEvent (value: string, previous: string | undefined): void {
    if (HARMLESS_MAINTENANCE.has(value)) return
    if (!TERMINATING_MAINTENANCE.has(value)) throw new Error(`unknown maintenance-event value: ${JSON.stringify(value.slice(0, 80))}`)
    if (value === previous) return
    this.outlet.deliver(`maintenance:${value}`, {
      source: 'gcp',
      kind: `maintenance:${value}`,
      description: `GCE host maintenance ${value}`
    })
  }
}
