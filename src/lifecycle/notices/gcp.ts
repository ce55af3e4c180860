import { sleep } from '../../wait.js'
import { Backoff } from './backoff.js'
import { CloudSourceRun, type CloudSourceOptions } from './cloud-source.js'
import { LongPoll } from './gcp-long-poll.js'
import { describeError, metadataRequest } from './metadata-request.js'
import type { Notice, NoticeSource } from './notice.js'

export interface GcpNoticeSourceOptions extends CloudSourceOptions {
  /** `timeout_sec` of each long-poll. */
  readonly longPollTimeoutSec?: number
  /** HTTP timeout of a long-poll; default 10 s above timeout_sec, as Google's guest agent does. */
  readonly longPollRequestTimeoutMs?: number
  /** Time from the preemption notice to the hard power-off (ACPI soft-off, then 30 s). */
  readonly preemptionNoticeMs?: number
}

const FLAVOR = { 'Metadata-Flavor': 'Google' }

const PREEMPTED = new Set(['TRUE', 'FALSE'])
const TERMINATING_MAINTENANCE = new Set(['TERMINATE_ON_HOST_MAINTENANCE', 'SHUTDOWN_ON_HOST_MAINTENANCE'])
const HARMLESS_MAINTENANCE = new Set(['NONE', 'MIGRATE_ON_HOST_MAINTENANCE'])

/**
 * GCE metadata server: `instance/preempted` and `instance/maintenance-event`, each
 * watched with a long-poll (`wait_for_change` + ETag), falling back to polling
 * every pollIntervalMs where long-polling does not work (gcp-long-poll.ts).
 */
export class GcpNoticeSource implements NoticeSource {
  readonly name = 'gcp' as const
  private readonly run: CloudSourceRun
  private readonly longPollTimeoutSec: number
  private readonly longPollRequestTimeoutMs: number

  constructor (private readonly options: GcpNoticeSourceOptions) {
    this.run = new CloudSourceRun('gcp', options)
    this.longPollTimeoutSec = Math.max(1, Math.floor(options.longPollTimeoutSec ?? 60))
    this.longPollRequestTimeoutMs = options.longPollRequestTimeoutMs ?? (this.longPollTimeoutSec + 10) * 1000
  }

  start (emit: (notice: Notice) => void): void {
    this.run.start(emit, {
      fields: { url: this.options.baseUrl },
      message: 'watching GCE metadata for preemption and host maintenance'
    }, () => Promise.all([
      this.watch('preempted', (value, previous) => this.onPreempted(value, previous)),
      this.watch('maintenance-event', (value, previous) => this.onMaintenanceEvent(value, previous))
    ]))
  }

  stop (): Promise<void> {
    return this.run.stop()
  }

  /** Follows one metadata value; `onValue` throws when the value is unparsable. */
  private async watch (key: string, onValue: (value: string, previous: string | undefined) => void): Promise<void> {
    const { signal, failures } = this.run
    const poll = new LongPoll(`${this.options.baseUrl}/computeMetadata/v1/instance/${key}`, key, {
      timeoutSec: this.longPollTimeoutSec,
      requestTimeoutMs: this.longPollRequestTimeoutMs,
      plainTimeoutMs: this.options.requestTimeoutMs ?? 3000,
      pollIntervalMs: this.options.pollIntervalMs
    }, this.run.log)
    // Brief 503s happen during host maintenance; Google's advice is to retry after about a second.
    const backoff = new Backoff({ initialMs: 1000, maxMs: 5000, ...this.options.retry })
    let value: string | undefined
    while (!signal.aborted) {
      const request = poll.next()
      let answered = false
      let waited = false
      let understood = false
      try {
        const response = await metadataRequest(request.url, { headers: FLAVOR, timeoutMs: request.timeoutMs, signal })
        if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
        if (response.headers.get('metadata-flavor') !== 'Google') throw new Error('answer without Metadata-Flavor: Google, not the metadata server')
        waited = poll.answered(response.headers.get('etag') ?? undefined)
        answered = true
        const next = response.body.trim()
        onValue(next, value)
        value = next
        understood = true
      } catch (error) {
        if (signal.aborted) break
        if (!answered) poll.miss()
        failures.failure(`GCP ${key}`, describeError(error))
      }
      if (understood) {
        backoff.reset()
        failures.success()
      }
      // A long-poll that waited asks again at once; one that did not, or a plain poll, waits its turn.
      await sleep(!understood ? backoff.next() : request.longPoll && waited ? 0 : this.options.pollIntervalMs, signal)
    }
  }

  private onPreempted (value: string, previous: string | undefined): void {
    if (!PREEMPTED.has(value)) throw new Error(`unparsable preempted value: ${JSON.stringify(value.slice(0, 80))}`)
    if (value !== 'TRUE' || previous === 'TRUE') return
    this.run.outlet.deliver('preempted', {
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
    this.run.outlet.deliver(`maintenance:${value}`, {
      source: 'gcp',
      kind: `maintenance:${value}`,
      description: `GCE host maintenance ${value}`
    })
  }
}
