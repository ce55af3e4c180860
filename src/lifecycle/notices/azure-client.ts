import { metadataRequest } from './metadata-request.js'

// The transport of the Azure source: the instance metadata service's VM name and its
// Scheduled Events document, and the acknowledgement of an event. azure.ts turns the
// document into notices.

const HEADERS = { Metadata: 'true' }
const NAME_PATH = '/metadata/instance/compute/name?api-version=2021-02-01&format=text'
const EVENTS_PATH = '/metadata/scheduledevents?api-version=2020-07-01'

export interface ScheduledEventsClientOptions {
  readonly baseUrl: string
  readonly requestTimeoutMs: number
  /** Timeout of a scheduled-events request: the first one enables the service and can take up to 2 minutes. */
  readonly eventsTimeoutMs: number
}

export class ScheduledEventsClient {
  constructor (private readonly options: ScheduledEventsClientOptions) {}

  /** This VM's name as scheduled events list it; throws on a failure or an implausible name. */
  async vmName (signal: AbortSignal): Promise<string> {
    const response = await metadataRequest(`${this.options.baseUrl}${NAME_PATH}`, { headers: HEADERS, timeoutMs: this.options.requestTimeoutMs, signal })
    if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
    const name = response.body.trim()
    if (name === '' || /[\s"<>{}]/.test(name)) throw new Error(`unexpected VM name ${JSON.stringify(name.slice(0, 80))}`)
    return name
  }

  /** The scheduled-events document, as text. */
  async events (signal: AbortSignal): Promise<string> {
    const response = await metadataRequest(`${this.options.baseUrl}${EVENTS_PATH}`, { headers: HEADERS, timeoutMs: this.options.eventsTimeoutMs, signal })
    if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
    return response.body
  }

  /** Tells Azure it may go ahead with the event now (StartRequests). */
  async acknowledge (eventId: string, signal: AbortSignal): Promise<void> {
    const response = await metadataRequest(`${this.options.baseUrl}${EVENTS_PATH}`, {
      method: 'POST',
      headers: { ...HEADERS, 'Content-Type': 'application/json' },
      body: JSON.stringify({ StartRequests: [{ EventId: eventId }] }),
      timeoutMs: this.options.requestTimeoutMs,
      signal
    })
    if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
  }
}
