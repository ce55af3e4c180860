import type { Logger } from 'pino'
import type { Metrics } from '../../metrics.js'
import type { BackoffOptions } from './backoff.js'
import { FailureLog } from './failure-log.js'
import type { Notice, NoticeSourceName } from './notice.js'
import { NoticeOutlet } from './notice-outlet.js'

/** What every cloud notice source is built with. */
export interface CloudSourceOptions {
  /** The metadata service's base URL, without a trailing slash (config.metadataUrls). */
  readonly baseUrl: string
  /** Polling period where the source cannot long-poll (config.noticePollIntervalMs). */
  readonly pollIntervalMs: number
  readonly log: Logger
  readonly metrics: Pick<Metrics, 'noticeSourceErrors' | 'rebalanceRecommendations'>
  /** Retry delays after failures; the defaults suit the real services. */
  readonly retry?: BackoffOptions
  /** Timeout of one ordinary (not long-polling) request. */
  readonly requestTimeoutMs?: number
}

type CloudName = Exclude<NoticeSourceName, 'sigterm' | 'sigint' | 'admin'>

const LABEL: Record<CloudName, string> = { aws: 'AWS', gcp: 'GCP', azure: 'Azure' }

/**
 * The start/stop skeleton every cloud source shares: its log, the outlet its notices
 * leave by, the log of its failures, one signal that stops its requests and loops, and
 * the loops themselves. A source adds only its transport and its translation.
 */
export class CloudSourceRun {
  readonly log: Logger
  readonly outlet: NoticeOutlet
  readonly failures: FailureLog
  private readonly stopping = new AbortController()
  private running: Promise<unknown> | undefined

  constructor (private readonly name: CloudName, options: CloudSourceOptions) {
    this.log = options.log.child({ source: name })
    this.outlet = new NoticeOutlet(this.log)
    this.failures = new FailureLog(name, this.log, options.metrics)
  }

  /** Aborts when the source stops: every request and pause of the source takes it. */
  get signal (): AbortSignal {
    return this.stopping.signal
  }

  /** Connects `emit` and runs `loops` until stop(), once; `watching` is logged first. */
  start (emit: (notice: Notice) => void, watching: { fields: object, message: string }, loops: () => Promise<unknown>): void {
    if (this.running !== undefined || this.stopping.signal.aborted) return
    this.outlet.connect(emit)
    this.log.info(watching.fields, watching.message)
    this.running = loops().catch((error: unknown) => {
      this.log.error({ err: error }, `${LABEL[this.name]} notice source stopped unexpectedly`)
    })
  }

  async stop (): Promise<void> {
    this.stopping.abort()
    await this.running
  }
}
