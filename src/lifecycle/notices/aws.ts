import { isJsonObject } from '../../json.js'
import { sleep } from '../../wait.js'
import { ImdsClient } from './aws-imds.js'
import { Backoff } from './backoff.js'
import { CloudSourceRun, type CloudSourceOptions } from './cloud-source.js'
import { describeError } from './metadata-request.js'
import type { Notice, NoticeSource } from './notice.js'

export interface AwsNoticeSourceOptions extends CloudSourceOptions {
  /** Whether a rebalance recommendation is a notice (config.awsRebalanceDrains); otherwise it is logged and counted. */
  readonly rebalanceDrains?: boolean
  /** IMDSv2 session token lifetime, 1..21600 s. */
  readonly tokenTtlSeconds?: number
}

const SPOT_INSTANCE_ACTION = '/latest/meta-data/spot/instance-action'
const TARGET_LIFECYCLE_STATE = '/latest/meta-data/autoscaling/target-lifecycle-state'
const REBALANCE_RECOMMENDATION = '/latest/meta-data/events/recommendations/rebalance'

// Strict on purpose: Date.parse also accepts "1" or "May 5", and a notice whose time
// cannot be trusted must be an error, not a drain.
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/

/**
 * EC2 instance metadata (IMDSv2 only): the spot instance-action, the Auto Scaling
 * target lifecycle state and the rebalance recommendation, polled every pollIntervalMs.
 * The token and the requests are aws-imds.ts's; this file reads the answers.
 */
export class AwsNoticeSource implements NoticeSource {
  readonly name = 'aws' as const
  private readonly run: CloudSourceRun
  private readonly imds: ImdsClient
  private readonly backoff: Backoff
  private lastRebalanceNoticeTime: string | undefined

  constructor (private readonly options: AwsNoticeSourceOptions) {
    this.run = new CloudSourceRun('aws', options)
    this.imds = new ImdsClient({
      baseUrl: options.baseUrl,
      tokenTtlSeconds: options.tokenTtlSeconds,
      requestTimeoutMs: options.requestTimeoutMs ?? 3000,
      signal: this.run.signal,
      log: this.run.log
    })
    this.backoff = new Backoff({ initialMs: 500, maxMs: 5000, ...options.retry })
  }

  start (emit: (notice: Notice) => void): void {
    this.run.start(emit, {
      fields: { url: this.options.baseUrl, pollIntervalMs: this.options.pollIntervalMs },
      message: 'watching EC2 instance metadata for interruption notices'
    }, () => this.poll())
  }

  stop (): Promise<void> {
    return this.run.stop()
  }

  private async poll (): Promise<void> {
    const signal = this.run.signal
    while (!signal.aborted) {
      const answered = await Promise.all([
        this.check('spot instance-action', SPOT_INSTANCE_ACTION, (body) => this.onSpotInstanceAction(body)),
        this.check('target lifecycle state', TARGET_LIFECYCLE_STATE, (body) => this.onTargetLifecycleState(body)),
        this.check('rebalance recommendation', REBALANCE_RECOMMENDATION, (body) => this.onRebalanceRecommendation(body))
      ])
      if (signal.aborted) break
      if (answered.every(Boolean)) {
        this.backoff.reset()
        this.run.failures.success()
        await sleep(this.options.pollIntervalMs, signal)
      } else {
        await sleep(this.backoff.next(), signal)
      }
    }
  }

  /** One GET; 404 means "nothing there". Returns false on a failure, which is logged and counted. */
  private async check (what: string, path: string, onAnswer: (body: string) => void): Promise<boolean> {
    try {
      const response = await this.imds.get(path)
      if (response.status === 404) return true
      if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
      onAnswer(response.body)
      return true
    } catch (error) {
      if (this.run.signal.aborted) return true
      this.run.failures.failure(`AWS ${what}`, describeError(error))
      return false
    }
  }

  // Real IMDS answers text/plain compact JSON, amazon-ec2-metadata-mock application/json
  // indented: the content type says nothing, so parse whatever comes.
  private onSpotInstanceAction (body: string): void {
    const parsed = parseJsonObject(body)
    const { action, time } = parsed
    if (typeof action !== 'string' || !/^[A-Za-z-]+$/.test(action)) throw new Error(`unparsable spot instance-action: action ${JSON.stringify(action)}`)
    const deadline = parseIsoTime(time)
    if (deadline === undefined) throw new Error(`unparsable spot instance-action: time ${JSON.stringify(time)}`)
    this.run.outlet.deliver(`spot-instance-action:${action}`, {
      source: 'aws',
      kind: `spot-instance-action:${action}`,
      deadline,
      description: `EC2 spot instance-action ${action} at ${String(time)}`
    })
  }

  private onTargetLifecycleState (body: string): void {
    // Other states (InService, Warmed:*, Standby...) are normal life, not a notice.
    if (body.trim() !== 'Terminated') return
    this.run.outlet.deliver('asg-lifecycle:Terminated', {
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
    this.run.log.warn({ noticeTime: at, drains: this.options.rebalanceDrains === true }, 'EC2 rebalance recommendation: elevated risk of spot interruption')
    if (this.options.rebalanceDrains !== true) return
    this.run.outlet.deliver('rebalance-recommendation', {
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
  if (!isJsonObject(parsed)) throw new Error(`unexpected answer: ${JSON.stringify(body.slice(0, 80))}`)
  return parsed
}

function parseIsoTime (value: unknown): number | undefined {
  if (typeof value !== 'string' || !ISO_8601.test(value)) return undefined
  const ms = Date.parse(value)
  return Number.isFinite(ms) ? ms : undefined
}
