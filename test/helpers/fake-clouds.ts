import { randomBytes, randomUUID } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * Fake cloud metadata services on 127.0.0.1 that enforce each cloud's real protocol
 * (tokens, required headers, 404 vs 200 bodies, long-polls), record what they receive,
 * and can be made slow, down or absurd. Point a source (or a gateway process, through
 * AWS_METADATA_URL / GCP_METADATA_URL / AZURE_METADATA_URL) at `url`.
 */

/** One request as the fake received it. `status` is set once answered; `aborted` when the client went away first. */
export interface RecordedRequest {
  readonly method: string
  /** Path and query, as sent. */
  readonly url: string
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: IncomingHttpHeaders
  readonly body: string
  readonly receivedAt: number
  status?: number
  answeredAt?: number
  aborted?: boolean
}

/**
 * What a fake does instead of answering properly: an HTTP status (503, 500, 429...),
 * `garbage` (200 with an HTML page, the cloud's usual headers), `hang` (never answers),
 * or `reset` (drops the connection).
 */
export type Fault = number | 'garbage' | 'hang' | 'reset'

export interface FaultScope {
  /** Only requests to this path (no query); default: every path. */
  readonly path?: string
  readonly method?: string
  /** How many matching requests get the fault; default: all until clearFaults(). */
  readonly times?: number
}

interface FaultRule extends FaultScope {
  readonly fault: Fault
  remaining: number
}

const GARBAGE = '<html><head><title>Captive portal</title></head><body>Please log in</body></html>'

export abstract class FakeMetadataServer {
  readonly requests: RecordedRequest[] = []
  private server: Server | undefined
  private faults: FaultRule[] = []

  /** Listens on 127.0.0.1, on `port` or a free one. */
  async start (port = 0): Promise<this> {
    const server = createServer((req, res) => { void this.receive(req, res) })
    server.keepAliveTimeout = 1000
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve())
    })
    this.server = server
    return this
  }

  get port (): number {
    if (this.server === undefined) throw new Error('fake metadata server not started')
    return (this.server.address() as AddressInfo).port
  }

  /** Base URL, without a trailing slash. */
  get url (): string {
    return `http://127.0.0.1:${this.port}`
  }

  fail (fault: Fault, scope: FaultScope = {}): void {
    this.faults.push({ ...scope, fault, remaining: scope.times ?? Infinity })
  }

  clearFaults (): void {
    this.faults = []
  }

  /** Requests to `path` (no query), optionally of one method. */
  requestsTo (path: string, method?: string): RecordedRequest[] {
    return this.requests.filter((r) => r.path === path && (method === undefined || r.method === method))
  }

  /** Stops listening and drops every connection, held long-polls and hung requests included. */
  async close (): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    this.onClose()
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeAllConnections()
    await closed
  }

  protected abstract handle (request: RecordedRequest, res: ServerResponse): void
  /** Headers every answer of this cloud carries. */
  protected commonHeaders (): Record<string, string> {
    return {}
  }

  protected onClose (): void {}

  protected send (request: RecordedRequest, res: ServerResponse, status: number, body = '', headers: Record<string, string> = {}): void {
    if (res.writableEnded || res.destroyed) return
    request.status = status
    request.answeredAt = Date.now()
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...this.commonHeaders(), ...headers, 'Content-Length': Buffer.byteLength(body) })
    res.end(body)
  }

  private async receive (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const url = new URL(req.url ?? '/', 'http://fake')
    const request: RecordedRequest = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      body: Buffer.concat(chunks).toString('utf8'),
      receivedAt: Date.now()
    }
    this.requests.push(request)
    res.once('close', () => { if (!res.writableFinished) request.aborted = true })
    const fault = this.takeFault(request)
    if (fault === undefined) return this.handle(request, res)
    // 'hang': no answer; the client times out, or close() drops the connection.
    if (fault === 'reset') req.socket.destroy()
    if (fault === 'garbage') this.send(request, res, 200, GARBAGE, { 'Content-Type': 'text/html' })
    if (typeof fault === 'number') this.send(request, res, fault, `fault ${fault}`)
  }

  private takeFault (request: RecordedRequest): Fault | undefined {
    const rule = this.faults.find((f) => f.remaining > 0 &&
      (f.path === undefined || f.path === request.path) &&
      (f.method === undefined || f.method === request.method))
    if (rule === undefined) return undefined
    rule.remaining--
    return rule.fault
  }
}

// ─── AWS ────────────────────────────────────────────────────────────────────────

export const AWS_PATHS = {
  token: '/latest/api/token',
  spotInstanceAction: '/latest/meta-data/spot/instance-action',
  targetLifecycleState: '/latest/meta-data/autoscaling/target-lifecycle-state',
  rebalance: '/latest/meta-data/events/recommendations/rebalance'
} as const

export interface SpotInstanceAction {
  readonly action: string
  /** ISO-8601; omitted: now + 2 minutes, recomputed on every answer (as amazon-ec2-metadata-mock does). */
  readonly time?: string
}

/**
 * `imds`: the real service, text/plain compact JSON. `mock`: amazon-ec2-metadata-mock,
 * application/json indented with tabs.
 */
export type AwsFormat = 'imds' | 'mock'

const IMDS_NOT_FOUND = `<?xml version="1.0" encoding="iso-8859-1"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html><head><title>404 - Not Found</title></head><body><h1>404 - Not Found</h1></body></html>
`

/** EC2 instance metadata, IMDSv2 only: no valid token, 401. */
export class FakeAws extends FakeMetadataServer {
  private readonly tokens = new Map<string, number>()
  private spot: { notice: SpotInstanceAction, format: AwsFormat } | undefined
  private lifecycleState: string | undefined
  private rebalance: { noticeTime: string, format: AwsFormat } | undefined
  private instanceActionBody: string | undefined

  static async start (port = 0): Promise<FakeAws> {
    return new FakeAws().start(port)
  }

  /** A spot interruption notice; undefined: none (404). */
  setSpotInstanceAction (notice: SpotInstanceAction | undefined, format: AwsFormat = 'imds'): void {
    this.spot = notice === undefined ? undefined : { notice, format }
    this.instanceActionBody = undefined
  }

  /** Answer spot/instance-action with exactly this body (200), e.g. an unparsable notice. */
  setSpotInstanceActionBody (body: string | undefined): void {
    this.instanceActionBody = body
  }

  /** e.g. `InService`, `Terminated`; undefined: not populated (404). */
  setTargetLifecycleState (state: string | undefined): void {
    this.lifecycleState = state
  }

  setRebalanceRecommendation (noticeTime: string | undefined, format: AwsFormat = 'imds'): void {
    this.rebalance = noticeTime === undefined ? undefined : { noticeTime, format }
  }

  /** Every token issued so far stops working (401), as after its TTL. */
  expireTokens (): void {
    for (const token of this.tokens.keys()) this.tokens.set(token, 0)
  }

  get tokensIssued (): number {
    return this.requestsTo(AWS_PATHS.token, 'PUT').filter((r) => r.status === 200).length
  }

  protected handle (request: RecordedRequest, res: ServerResponse): void {
    if (request.path === AWS_PATHS.token) return this.issueToken(request, res)
    if (request.method !== 'GET') return this.send(request, res, 405, '')
    const token = request.headers['x-aws-ec2-metadata-token']
    const expiresAt = typeof token === 'string' ? this.tokens.get(token) : undefined
    if (expiresAt === undefined || expiresAt <= Date.now()) return this.send(request, res, 401, '')
    switch (request.path) {
      case AWS_PATHS.spotInstanceAction:
        if (this.instanceActionBody !== undefined) return this.send(request, res, 200, this.instanceActionBody)
        if (this.spot === undefined) return this.notFound(request, res)
        return this.json(request, res, { action: this.spot.notice.action, time: this.spot.notice.time ?? isoSeconds(Date.now() + 120_000) }, this.spot.format)
      case AWS_PATHS.targetLifecycleState:
        return this.lifecycleState === undefined ? this.notFound(request, res) : this.send(request, res, 200, this.lifecycleState)
      case AWS_PATHS.rebalance:
        return this.rebalance === undefined ? this.notFound(request, res) : this.json(request, res, { noticeTime: this.rebalance.noticeTime }, this.rebalance.format)
      default:
        return this.notFound(request, res)
    }
  }

  private issueToken (request: RecordedRequest, res: ServerResponse): void {
    if (request.method !== 'PUT') return this.send(request, res, 405, '')
    const ttl = request.headers['x-aws-ec2-metadata-token-ttl-seconds']
    const seconds = typeof ttl === 'string' && /^\d+$/.test(ttl) ? Number(ttl) : NaN
    if (!(seconds >= 1 && seconds <= 21600)) return this.send(request, res, 400, '')
    const token = `AQAEA${randomBytes(30).toString('base64url')}==`
    this.tokens.set(token, Date.now() + seconds * 1000)
    this.send(request, res, 200, token, { 'X-aws-ec2-metadata-token-ttl-seconds': String(seconds) })
  }

  private notFound (request: RecordedRequest, res: ServerResponse): void {
    this.send(request, res, 404, IMDS_NOT_FOUND, { 'Content-Type': 'text/html' })
  }

  private json (request: RecordedRequest, res: ServerResponse, value: object, format: AwsFormat): void {
    if (format === 'mock') this.send(request, res, 200, JSON.stringify(value, null, '\t'), { 'Content-Type': 'application/json' })
    else this.send(request, res, 200, JSON.stringify(value), { 'Content-Type': 'text/plain' })
  }
}

/** `2017-09-18T08:22:00Z`: IMDS writes whole seconds. */
export function isoSeconds (ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z')
}

// ─── GCP ────────────────────────────────────────────────────────────────────────

export const GCP_PATHS = {
  preempted: '/computeMetadata/v1/instance/preempted',
  maintenanceEvent: '/computeMetadata/v1/instance/maintenance-event'
} as const

interface GcpValue {
  value: string
  etag: string
}

interface HeldLongPoll {
  readonly request: RecordedRequest
  readonly res: ServerResponse
  readonly key: string
  readonly timer: NodeJS.Timeout
}

const INSTANCE_PREFIX = '/computeMetadata/v1/instance/'

/** The GCE metadata server: `Metadata-Flavor: Google` both ways, ETags, `wait_for_change` long-polls. */
export class FakeGcp extends FakeMetadataServer {
  /** Answer long-polls at once, as a server that ignores `wait_for_change` would. */
  ignoreWaitForChange = false
  /** Leave the ETag header out of answers. */
  omitEtag = false
  private readonly values = new Map<string, GcpValue>([
    ['preempted', { value: 'FALSE', etag: newEtag() }],
    ['maintenance-event', { value: 'NONE', etag: newEtag() }]
  ])

  private readonly held = new Set<HeldLongPoll>()

  static async start (port = 0): Promise<FakeGcp> {
    return new FakeGcp().start(port)
  }

  setPreempted (preempted: boolean): void {
    this.setValue('preempted', preempted ? 'TRUE' : 'FALSE')
  }

  /** `NONE`, `MIGRATE_ON_HOST_MAINTENANCE`, `TERMINATE_ON_HOST_MAINTENANCE`... */
  setMaintenanceEvent (value: string): void {
    this.setValue('maintenance-event', value)
  }

  /** Any `instance/<key>` value; a change gets a new ETag and answers the long-polls waiting on it. */
  setValue (key: string, value: string): void {
    const current = this.values.get(key)
    if (current?.value === value) return
    const next = { value, etag: newEtag() }
    this.values.set(key, next)
    for (const poll of this.held) {
      if (poll.key !== key) continue
      this.release(poll)
      this.answer(poll.request, poll.res, next)
    }
  }

  /** Long-polls being held right now. */
  get heldLongPolls (): number {
    return this.held.size
  }

  protected override commonHeaders (): Record<string, string> {
    return { 'Metadata-Flavor': 'Google' }
  }

  protected override onClose (): void {
    for (const poll of this.held) this.release(poll)
  }

  protected handle (request: RecordedRequest, res: ServerResponse): void {
    if (request.headers['metadata-flavor'] !== 'Google') {
      return this.send(request, res, 403, 'Missing required header "Metadata-Flavor": "Google"\n', { 'Content-Type': 'text/html' })
    }
    if (request.method !== 'GET') return this.send(request, res, 405, '')
    const key = request.path.startsWith(INSTANCE_PREFIX) ? request.path.slice(INSTANCE_PREFIX.length) : ''
    const current = this.values.get(key)
    if (current === undefined) return this.send(request, res, 404, 'Not Found\n', { 'Content-Type': 'text/html' })
    const lastEtag = request.query.get('last_etag')
    const waits = request.query.get('wait_for_change') === 'true' && !this.ignoreWaitForChange &&
      (lastEtag === null || lastEtag === current.etag)
    if (!waits) return this.answer(request, res, current)
    const timeoutSec = Number(request.query.get('timeout_sec') ?? 3600)
    const poll: HeldLongPoll = {
      request,
      res,
      key,
      timer: setTimeout(() => {
        this.release(poll)
        this.answer(request, res, this.values.get(key) ?? current)
      }, Math.max(0, timeoutSec) * 1000)
    }
    this.held.add(poll)
    res.once('close', () => this.release(poll))
  }

  private release (poll: HeldLongPoll): void {
    clearTimeout(poll.timer)
    this.held.delete(poll)
  }

  private answer (request: RecordedRequest, res: ServerResponse, current: GcpValue): void {
    this.send(request, res, 200, current.value, {
      'Content-Type': 'application/text',
      ...(!this.omitEtag && { ETag: current.etag })
    })
  }
}

function newEtag (): string {
  return randomBytes(8).toString('hex')
}

// ─── Azure ──────────────────────────────────────────────────────────────────────

export const AZURE_PATHS = {
  computeName: '/metadata/instance/compute/name',
  scheduledEvents: '/metadata/scheduledevents'
} as const

export interface ScheduledEvent {
  EventId: string
  EventType: string
  ResourceType: string
  Resources: string[]
  EventStatus: 'Scheduled' | 'Started'
  /** RFC 1123; "" once Started. */
  NotBefore: string
  Description: string
  EventSource: string
  DurationInSeconds: number
}

/** A scheduled event with plausible defaults: Scheduled, NotBefore 1 minute from now. */
export function scheduledEvent (event: Pick<ScheduledEvent, 'EventType' | 'Resources'> & Partial<ScheduledEvent>): ScheduledEvent {
  return {
    EventId: randomUUID().toUpperCase(),
    ResourceType: 'VirtualMachine',
    EventStatus: 'Scheduled',
    NotBefore: new Date(Date.now() + 60_000).toUTCString(),
    Description: '',
    EventSource: 'Platform',
    DurationInSeconds: -1,
    ...event
  }
}

export interface FakeAzureOptions {
  readonly vmName?: string
  /** The first scheduled-events GET is held this long (the real one enables the service and can take 2 minutes). */
  readonly firstEventsCallDelayMs?: number
}

/** Azure IMDS with Scheduled Events: `Metadata: true` and `api-version` required; StartRequests recorded. */
export class FakeAzure extends FakeMetadataServer {
  readonly vmName: string
  /** EventIds acknowledged with StartRequests, in order. */
  readonly startRequests: string[] = []
  private events: ScheduledEvent[] = []
  private eventsBody: string | undefined
  private incarnation = 1
  private firstEventsCallDelayMs: number
  private readonly timers = new Set<NodeJS.Timeout>()

  constructor (options: FakeAzureOptions = {}) {
    super()
    this.vmName = options.vmName ?? 'spot-vm-1'
    this.firstEventsCallDelayMs = options.firstEventsCallDelayMs ?? 0
  }

  static async start (options: FakeAzureOptions = {}, port = 0): Promise<FakeAzure> {
    return new FakeAzure(options).start(port)
  }

  setEvents (events: ScheduledEvent[]): void {
    this.events = events.map((e) => ({ ...e }))
    this.eventsBody = undefined
    this.incarnation++
  }

  /** Answer scheduled-events GETs with exactly this body (200), e.g. a broken document. */
  setEventsBody (body: string | undefined): void {
    this.eventsBody = body
  }

  get documentIncarnation (): number {
    return this.incarnation
  }

  protected override onClose (): void {
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
  }

  protected handle (request: RecordedRequest, res: ServerResponse): void {
    if (request.headers.metadata !== 'true') {
      return this.error(request, res, 400, 'Bad request. Required metadata header not specified')
    }
    const apiVersion = request.query.get('api-version')
    if (apiVersion === null || !/^\d{4}-\d{2}-\d{2}$/.test(apiVersion)) {
      return this.error(request, res, 400, 'Bad request. api-version was not specified in the request')
    }
    if (request.path === AZURE_PATHS.computeName && request.method === 'GET') {
      if (request.query.get('format') !== 'text') return this.error(request, res, 400, 'Bad request. Leaf nodes need format=text')
      return this.send(request, res, 200, this.vmName)
    }
    if (request.path === AZURE_PATHS.scheduledEvents && request.method === 'GET') {
      const delay = this.firstEventsCallDelayMs
      this.firstEventsCallDelayMs = 0
      if (delay <= 0) return this.sendEvents(request, res)
      const timer = setTimeout(() => { this.timers.delete(timer); this.sendEvents(request, res) }, delay)
      this.timers.add(timer)
      return
    }
    if (request.path === AZURE_PATHS.scheduledEvents && request.method === 'POST') return this.startEvents(request, res)
    this.error(request, res, 404, 'Not found')
  }

  private sendEvents (request: RecordedRequest, res: ServerResponse): void {
    if (this.eventsBody !== undefined) return this.send(request, res, 200, this.eventsBody, { 'Content-Type': 'application/json; charset=utf-8' })
    this.send(request, res, 200, JSON.stringify({ DocumentIncarnation: this.incarnation, Events: this.events }), { 'Content-Type': 'application/json; charset=utf-8' })
  }

  // Approving an event lets it start for every VM it lists.
  private startEvents (request: RecordedRequest, res: ServerResponse): void {
    let ids: string[]
    try {
      const body = JSON.parse(request.body) as { StartRequests?: Array<{ EventId?: unknown }> }
      if (!Array.isArray(body.StartRequests)) throw new Error('no StartRequests')
      ids = body.StartRequests.map((r) => {
        if (typeof r.EventId !== 'string') throw new Error('no EventId')
        return r.EventId
      })
    } catch {
      return this.error(request, res, 400, 'Bad request. Invalid StartRequests body')
    }
    if (!ids.every((id) => this.events.some((e) => e.EventId === id))) return this.error(request, res, 400, 'Bad request. Unknown EventId')
    this.startRequests.push(...ids)
    for (const event of this.events) {
      if (ids.includes(event.EventId)) Object.assign(event, { EventStatus: 'Started', NotBefore: '' })
    }
    this.incarnation++
    this.send(request, res, 200, '')
  }

  private error (request: RecordedRequest, res: ServerResponse, status: number, message: string): void {
    this.send(request, res, status, JSON.stringify({ error: message }), { 'Content-Type': 'application/json; charset=utf-8' })
  }
}
