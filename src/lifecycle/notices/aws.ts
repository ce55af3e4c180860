import type { Logger } from 'pino'
import { Backoff, pause } from './backoff.js'
import type { CloudSourceOptions } from './cloud-source-options.js'
import { FailureLog } from './failure-log.js'
import { describeError, metadataRequest, type MetadataResponse } from './metadata-request.js'
import type { Notice, NoticeSource } from './notice.js'
import { NoticeOutlet } from './notice-outlet.js'

export interface AwsNoticeSourceOptions extends CloudSourceOptions {
  /** Whether a rebalance recommendation is a notice (config.awsRebalanceDrains); otherwise it is logged and counted. */
  readonly rebalanceDrains?: boolean
  /** IMDSv2 session token lifetime, 1..21600 s. */
  readonly tokenTtlSeconds?: number
}

const TOKEN_PATH = '/latest/api/token'
const SPOT_INSTANCE_ACTION = '/latest/meta-data/spot/instance-action'
const TARGET_LIFECYCLE_STATE = '/latest/meta-data/autoscaling/target-lifecycle-state'
const REBALANCE_RECOMMENDATION = '/latest/meta-data/events/recommendations/rebalance'

// Strict on purpose: Date.parse also accepts "1" or "May 5", and a notice whose time
// cannot be trusted must be an error, not a drain.
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/

interface Token {
  readonly value: string
  readonly refreshAt: number
}

/**
 * EC2 instance metadata (IMDSv2 only): the spot instance-action, the Auto Scaling
 * target lifecycle state and the rebalance recommendation, polled every pollIntervalMs.
 */
export class AwsNoticeSource implements NoticeSource {
  readonly name = 'aws' as const
  private readonly stopping = new AbortController()
  private readonly log: Logger
  private readonly outlet: NoticeOutlet
  private readonly failures: FailureLog
  private readonly backoff: Backoff
  private readonly tokenTtlSeconds: number
  private readonly requestTimeoutMs: number
  private token: Token | undefined
  private tokenRequest: Promise<Token> | undefined
  private lastRebalanceNoticeTime: string | undefined
  private running: Promise<void> | undefined

  constructor (private readonly options: AwsNoticeSourceOptions) {
    this.log = options.log.child({ source: 'aws' })
    this.outlet = new NoticeOutlet(this.log)
    this.failures = new FailureLog('aws', this.log, options.metrics)
    this.backoff = new Backoff({ initialMs: 500, maxMs: 5000, ...options.retry })
    this.tokenTtlSeconds = Math.min(21600, Math.max(1, Math.floor(options.tokenTtlSeconds ?? 21600)))
    this.requestTimeoutMs = options.requestTimeoutMs ?? 3000
  }

  start (emit: (notice: Notice) => void): void {
    if (this.running !== undefined || this.stopping.signal.aborted) return
    this.outlet.connect(emit)
    this.log.info({ url: this.options.baseUrl, pollIntervalMs: this.options.pollIntervalMs }, 'watching EC2 instance metadata for interruption notices')
    this.running = this.run().catch((error: unknown) => {
      this.log.error({ err: error }, 'AWS notice source stopped unexpectedly')
    })
  }

  async stop (): Promise<void> {
    this.stopping.abort()
    await this.running
  }

  private async run (): Promise<void> {
    const signal = this.stopping.signal
    while (!signal.aborted) {
      const answered = await Promise.all([
        this.check('spot instance-action', SPOT_INSTANCE_ACTION, (body) => this.onSpotInstanceAction(body)),
        this.check('target lifecycle state', TARGET_LIFECYCLE_STATE, (body) => this.onTargetLifecycleState(body)),
        this.check('rebalance recommendation', REBALANCE_RECOMMENDATION, (body) => this.onRebalanceRecommendation(body))
      ])
      if (signal.aborted) break
      if (answered.every(Boolean)) {
        this.backoff.reset()
        this.failures.success()
        await pause(this.options.pollIntervalMs, signal)
      } else {
        await pause(this.backoff.next(), signal)
      }
    }
  }

  /** One GET; 404 means "nothing there". Returns false on a failure, which is logged and counted. */
  private async check (what: string, path: string, onAnswer: (body: string) => void): Promise<boolean> {
    try {
      const response = await this.get(path)
      if (response.status === 404) return true
      if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
      onAnswer(response.body)
      return true
    } catch (error) {
      if (this.stopping.signal.aborted) return true
      this.failures.failure(`AWS ${what}`, describeError(error))
      return false
    }
  }

  // A missing or expired token gets 401: fetch a new one and retry once, as
  // aws-node-termination-handler does (GETs carry no TTL header to rely on).
  private async get (path: string): Promise<MetadataResponse> {
    const token = await this.currentToken()
    const response = await this.request(path, token.value)
    if (response.status !== 401) return response
    this.log.debug({ path }, 'IMDS token refused; fetching a new one')
    const fresh = await this.currentToken(token)
    return this.request(path, fresh.value)
  }

  private request (path: string, token: string): Promise<MetadataResponse> {
    return metadataRequest(`${this.options.baseUrl}${path}`, {
      headers: { 'X-aws-ec2-metadata-token': token },
      timeoutMs: this.requestTimeoutMs,
      signal: this.stopping.signal
    })
  }

  /** The session token, fetched once for concurrent callers; `refused` forces a new one unless another caller already replaced it. */
  private async currentToken (refused?: Token): Promise<Token> {
    const token = this.token
    if (token !== undefined && token !== refused && Date.now() < token.refreshAt) return token
    this.tokenRequest ??= this.fetchToken().finally(() => { this.tokenRequest = undefined })
    return this.tokenRequest
  }

  private async fetchToken (): Promise<Token> {
    // The token's lifetime starts when IMDS issues it, before the answer arrives here.
    const askedAt = Date.now()
    let response: MetadataResponse
    try {
      response = await metadataRequest(`${this.options.baseUrl}${TOKEN_PATH}`, {
        method: 'PUT',
        headers: { 'X-aws-ec2-metadata-token-ttl-seconds': String(this.tokenTtlSeconds) },
        timeoutMs: this.requestTimeoutMs,
        signal: this.stopping.signal
      })
    } catch (error) {
      // The token answer has an IP hop limit of 1 by default: from a container on a
      // bridge network it never arrives, and the PUT times out.
      const reason = describeError(error)
      throw new Error(reason === 'timed out'
        ? 'token request timed out (from a container, the instance needs HttpPutResponseHopLimit >= 2)'
        : `token request: ${reason}`)
    }
    const value = response.body.trim()
    if (response.status !== 200 || value === '') throw new Error(`token request answered HTTP ${response.status}`)
    const ttlMs = this.tokenTtlSeconds * 1000
    const token = { value, refreshAt: askedAt + ttlMs - Math.min(60_000, ttlMs / 4) }
    this.token = token
    return token
  }

  // Real IMDS answers text/plain compact JSON, amazon-ec2-metadata-mock application/json
  // indented: the content type says nothing, so parse whatever comes.
  private onSpotInstanceAction (body: string): void {
    const parsed = parseJsonObject(body)
    const { action, time } = parsed
    if (typeof action !== 'string' || !/^[A-Za-z-]+$/.test(action)) throw new Error(`unparsable spot instance-action: action ${JSON.stringify(action)}`)
    const deadline = parseIsoTime(time)
    if (deadline === undefined) throw new Error(`unparsable spot instance-action: time ${JSON.stringify(time)}`)
    this.outlet.deliver(`spot-instance-action:${action}`, {
      source: 'aws',
      kind: `spot-instance-action:${action}`,
      deadline,
      description: `EC2 spot instance-action ${action} at ${String(time)}`
    })
  }

  private onTargetLifecycleState (body: string): void {
    // Other states (InService, Warmed:*, Standby...) are normal life, not a notice.
    if (body.trim() !== 'Terminated') return
    this.outlet.deliver('asg-lifecycle:Terminated', {
      source: 'aws',
      kind: 'asg-lifecycle:Terminated',
      description: 'Auto Scaling target lifecycle state is Terminated'
    })
  }

  private onRebalanceRecommendation (body: string): void {
    const { noticeTime } = parseJsonObject(body)
    if (parseIsoTime(noticeTime) === undefined) throw new Error(`unparsable rebalance recommendation: noticeTime ${JSON.stringify(noticeTime)}`)
    const at = noticeTime as string
    if (at === this.lastRebalanceNoticeTime) return
    this.lastRebalanceNoticeTime = at
    this.options.metrics.rebalanceRecommendations.inc()
    this.log.warn({ noticeTime: at, drains: this.options.rebalanceDrains === true }, 'EC2 rebalance recommendation: elevated risk of spot interruption')
    if (this.options.rebalanceDrains !== true) return
    this.outlet.deliver('rebalance-recommendation', {
      source: 'aws',
      kind: 'rebalance-recommendation',
      description: `EC2 rebalance recommendation at ${at}`
    })
  }
}

function parseJsonObject (body: string): Record<string, unknown> {
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    throw new Error(`unparsable answer: ${JSON.stringify(body.slice(0, 80))}`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`unexpected answer: ${JSON.stringify(body.slice(0, 80))}`)
  return parsed as Record<string, unknown>
}

function parseIsoTime (value: unknown): number | undefined {
  if (typeof value !== 'string' || !ISO_8601.test(value)) return undefined
  const ms = Date.parse(value)
  return Number.isFinite(ms) ? ms : undefined
}
