import type { Logger } from 'pino'
import { Backoff, pause } from './backoff.js'
import type { CloudSourceOptions } from './cloud-source-options.js'
import { FailureLog } from './failure-log.js'
import { describeError, metadataRequest } from './metadata-request.js'
import type { Notice, NoticeSource } from './notice.js'
import { NoticeOutlet } from './notice-outlet.js'

export interface AzureNoticeSourceOptions extends CloudSourceOptions {
  /** Timeout of a scheduled-events request: the first one enables the service and can take up to 2 minutes. */
  readonly eventsTimeoutMs?: number
}

const HEADERS = { Metadata: 'true' }
const NAME_PATH = '/metadata/instance/compute/name?api-version=2021-02-01&format=text'
const EVENTS_PATH = '/metadata/scheduledevents?api-version=2020-07-01'

// Redeploy, Reboot and Freeze keep the VM (and its disk) or pause it briefly; only these take it away.
const ACTED_ON = new Set(['Preempt', 'Terminate'])
const RFC_1123 = /^[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/

interface ScheduledEvent {
  readonly EventId: string
  readonly EventType: string
  readonly Resources: readonly string[]
  readonly EventStatus?: unknown
  readonly NotBefore?: unknown
}

/**
 * Azure Scheduled Events: `Preempt` and `Terminate` events naming this VM, polled
 * every pollIntervalMs; `drained()` acknowledges them with StartRequests.
 */
export class AzureNoticeSource implements NoticeSource {
  readonly name = 'azure' as const
  private readonly stopping = new AbortController()
  private readonly log: Logger
  private readonly outlet: NoticeOutlet
  private readonly failures: FailureLog
  private readonly backoff: Backoff
  private readonly requestTimeoutMs: number
  /** Events this instance drains for, and whether each was acknowledged. */
  private readonly actedOn = new Map<string, boolean>()
  private running: Promise<void> | undefined

  constructor (private readonly options: AzureNoticeSourceOptions) {
    this.log = options.log.child({ source: 'azure' })
    this.outlet = new NoticeOutlet(this.log)
    this.failures = new FailureLog('azure', this.log, options.metrics)
    this.backoff = new Backoff({ initialMs: 500, maxMs: 5000, ...options.retry })
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5000
  }

  start (emit: (notice: Notice) => void): void {
    if (this.running !== undefined || this.stopping.signal.aborted) return
    this.outlet.connect(emit)
    this.log.info({ url: this.options.baseUrl }, 'watching Azure Scheduled Events for preemption and termination')
    this.running = this.run().catch((error: unknown) => {
      this.log.error({ err: error }, 'Azure notice source stopped unexpectedly')
    })
  }

  async stop (): Promise<void> {
    this.stopping.abort()
    await this.running
  }

  /**
   * Acknowledges every event this instance acted on, once each, so Azure can go ahead
   * without waiting for NotBefore. Works before or after stop(); each request is bounded
   * by requestTimeoutMs.
   */
  async drained (): Promise<void> {
    const unstoppable = new AbortController().signal
    for (const [eventId, acknowledged] of this.actedOn) {
      if (acknowledged) continue
      try {
        const response = await metadataRequest(`${this.options.baseUrl}${EVENTS_PATH}`, {
          method: 'POST',
          headers: { ...HEADERS, 'Content-Type': 'application/json' },
          body: JSON.stringify({ StartRequests: [{ EventId: eventId }] }),
          timeoutMs: this.requestTimeoutMs,
          signal: unstoppable
        })
        if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
        this.actedOn.set(eventId, true)
        this.log.info({ eventId }, 'scheduled event acknowledged')
      } catch (error) {
        this.log.warn({ eventId, reason: describeError(error) }, 'could not acknowledge the scheduled event; Azure proceeds at NotBefore')
      }
    }
  }

  private async run (): Promise<void> {
    const signal = this.stopping.signal
    const vmName = await this.fetchVmName()
    if (vmName === undefined) return
    this.log.info({ vmName }, 'this VM\'s name, as scheduled events list it')
    while (!signal.aborted) {
      try {
        await this.pollEvents(vmName)
        this.backoff.reset()
        this.failures.success()
        await pause(this.options.pollIntervalMs, signal)
      } catch (error) {
        if (signal.aborted) break
        this.failures.failure('Azure scheduled events', describeError(error))
        await pause(this.backoff.next(), signal)
      }
    }
  }

  /** Retries until the instance metadata service names this VM; undefined once stopped. */
  private async fetchVmName (): Promise<string | undefined> {
    const signal = this.stopping.signal
    while (!signal.aborted) {
      try {
        const response = await metadataRequest(`${this.options.baseUrl}${NAME_PATH}`, { headers: HEADERS, timeoutMs: this.requestTimeoutMs, signal })
        if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
        const name = response.body.trim()
        if (name === '' || /[\s"<>{}]/.test(name)) throw new Error(`unexpected VM name ${JSON.stringify(name.slice(0, 80))}`)
        this.backoff.reset()
        this.failures.success()
        return name
      } catch (error) {
        if (signal.aborted) break
        this.failures.failure('Azure VM name', describeError(error))
        await pause(this.backoff.next(), signal)
      }
    }
    return undefined
  }

  private async pollEvents (vmName: string): Promise<void> {
    const response = await metadataRequest(`${this.options.baseUrl}${EVENTS_PATH}`, {
      headers: HEADERS,
      timeoutMs: this.options.eventsTimeoutMs ?? 150_000,
      signal: this.stopping.signal
    })
    if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
    const unparsable: string[] = []
    for (const event of parseEvents(response.body)) {
      if (!ACTED_ON.has(event.EventType)) continue
      if (!event.Resources.some((resource) => resource.toLowerCase() === vmName.toLowerCase())) continue
      const deadline = notBefore(event)
      if (deadline === undefined) {
        unparsable.push(`event ${event.EventId}: NotBefore ${JSON.stringify(event.NotBefore)}`)
        continue
      }
      if (!this.actedOn.has(event.EventId)) this.actedOn.set(event.EventId, false)
      this.outlet.deliver(event.EventId, {
        source: 'azure',
        kind: event.EventType,
        deadline,
        description: `Azure scheduled event ${event.EventType} ${event.EventId} (${String(event.EventStatus)})`
      })
    }
    if (unparsable.length > 0) throw new Error(`unparsable scheduled event: ${unparsable.join('; ')}`)
  }
}

/** The events of a scheduled-events document; throws when the document is not one. Malformed events are skipped: they cannot name this VM. */
function parseEvents (body: string): ScheduledEvent[] {
  let document: unknown
  try {
    document = JSON.parse(body)
  } catch {
    throw new Error(`unparsable scheduled events: ${JSON.stringify(body.slice(0, 80))}`)
  }
  const events = (document as { Events?: unknown } | null)?.Events
  if (!Array.isArray(events)) throw new Error(`scheduled events document without Events: ${JSON.stringify(body.slice(0, 80))}`)
  return events.filter((event): event is ScheduledEvent =>
    typeof event === 'object' && event !== null &&
    typeof event.EventId === 'string' && event.EventId !== '' &&
    typeof event.EventType === 'string' &&
    Array.isArray(event.Resources) && event.Resources.every((resource: unknown) => typeof resource === 'string'))
}

// NotBefore is RFC 1123 while the event is Scheduled and "" once it has Started: it is happening now.
function notBefore (event: ScheduledEvent): number | undefined {
  if (event.NotBefore === '') return Date.now()
  if (typeof event.NotBefore !== 'string' || !RFC_1123.test(event.NotBefore)) return undefined
  const ms = Date.parse(event.NotBefore)
  return Number.isFinite(ms) ? ms : undefined
}
