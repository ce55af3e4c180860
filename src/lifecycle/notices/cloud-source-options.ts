import type { Logger } from 'pino'
import type { Metrics } from '../../metrics.js'
import type { BackoffOptions } from './backoff.js'

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
