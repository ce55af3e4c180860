import { sleep } from '../../wait.js'
import { ScheduledEventsClient } from './azure-client.js'
import { Backoff } from './backoff.js'
import { CloudSourceRun, type CloudSourceOptions } from './cloud-source.js'
import { describeError } from './metadata-request.js'
import type { Notice, NoticeSource } from './notice.js'

export interface AzureNoticeSourceOptions extends CloudSourceOptions {
  /** Timeout of a scheduled-events request: the first one enables the service and can take up to 2 minutes. */
  readonly eventsTimeoutMs?: number
}

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
 * every pollIntervalMs; `drained()` acknowledges them with StartRequests. The requests
 * are azure-client.ts's; this file reads the events.
 */
export class AzureNoticeSource implements NoticeSource {
  readonly name = 'azure' as const
  private readonly run: CloudSourceRun
  private readonly client: ScheduledEventsClient
  private readonly backoff: Backoff
  /** Events this instance drains for, and whether each was acknowledged. */
  private readonly actedOn = new Map<string, boolean>()

  constructor (private readonly options: AzureNoticeSourceOptions) {
    this.run = new CloudSourceRun('azure', options)
    this.client = new ScheduledEventsClient({
      baseUrl: options.baseUrl,
      requestTimeoutMs: options.requestTimeoutMs ?? 5000,
      eventsTimeoutMs: options.eventsTimeoutMs ?? 150_000
    })
    this.backoff = new Backoff({ initialMs: 500, maxMs: 5000, ...options.retry })
  }

  start (emit: (notice: Notice) => void): void {
    this.run.start(emit, {
      fields: { url: this.options.baseUrl },
      message: 'watching Azure Scheduled Events for preemption and termination'
    }, () => this.poll())
  }

  stop (): Promise<void> {
    return this.run.stop()
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
        await this.client.acknowledge(eventId, unstoppable)
        this.actedOn.set(eventId, true)
        this.run.log.info({ eventId }, 'scheduled event acknowledged')
      } catch (error) {
        this.run.log.warn({ eventId, reason: describeError(error) }, 'could not acknowledge the scheduled event; Azure proceeds at NotBefore')
      }
    }
  }

  private async poll (): Promise<void> {
    const { signal, failures } = this.run
    const vmName = await this.fetchVmName()
    if (vmName === undefined) return
    this.run.log.info({ vmName }, 'this VM\'s name, as scheduled events list it')
    while (!signal.aborted) {
      try {
        this.onEvents(await this.client.events(signal), vmName)
        this.backoff.reset()
        failures.success()
        await sleep(this.options.pollIntervalMs, signal)
      } catch (error) {
        if (signal.aborted) break
        failures.failure('Azure scheduled events', describeError(error))
        await sleep(this.backoff.next(), signal)
      }
    }
  }

  /** Retries until the instance metadata service names this VM; undefined once stopped. */
  private async fetchVmName (): Promise<string | undefined> {
    const { signal, failures } = this.run
    while (!signal.aborted) {
      try {
        const name = await this.client.vmName(signal)
        this.backoff.reset()
        failures.success()
        return name
      } catch (error) {
        if (signal.aborted) break
        failures.failure('Azure VM name', describeError(error))
        await sleep(this.backoff.next(), signal)
      }
    }
    return undefined
  }

  private onEvents (document: string, vmName: string): void {
    const unparsable: string[] = []
    for (const event of parseEvents(document)) {
      if (!ACTED_ON.has(event.EventType)) continue
      if (!event.Resources.some((resource) => resource.toLowerCase() === vmName.toLowerCase())) continue
      const deadline = notBefore(event)
      if (deadline === undefined) {
        unparsable.push(`event ${event.EventId}: NotBefore ${JSON.stringify(event.NotBefore)}`)
        continue
      }
      if (!this.actedOn.has(event.EventId)) this.actedOn.set(event.EventId, false)
      this.run.outlet.deliver(event.EventId, {
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
