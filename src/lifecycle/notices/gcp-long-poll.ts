import type { Logger } from 'pino'

// The transport state of one GCE metadata value: long-poll it (`wait_for_change` with
// the last ETag) while that works, poll it plainly while it does not, and try
// long-polling again now and then. gcp.ts turns the values into notices.

// A long-poll that comes back this fast with nothing new did not wait: a server that
// ignores wait_for_change, or a proxy in the way.
const QUICK_RETURN_MS = 1000
// Long-polls in a row that failed or did not wait before falling back to plain polling,
// and how long to poll before trying to long-poll again (the failures may have been a
// few 503s of a host maintenance).
const LONG_POLL_MISSES_BEFORE_POLLING = 3
const POLLING_BEFORE_LONG_POLL_RETRY_MS = 5 * 60_000

export interface LongPollOptions {
  /** `timeout_sec` of each long-poll. */
  readonly timeoutSec: number
  /** HTTP timeout of a long-poll. */
  readonly requestTimeoutMs: number
  /** HTTP timeout of a plain poll. */
  readonly plainTimeoutMs: number
  /** Logged when falling back to polling. */
  readonly pollIntervalMs: number
}

export interface LongPollRequest {
  readonly url: string
  readonly timeoutMs: number
  /** Whether this request long-polls: a plain poll is repeated after pollIntervalMs. */
  readonly longPoll: boolean
}

export class LongPoll {
  private etag = '0'
  private longPolling = true
  private misses = 0
  private pollingSince = 0
  private startedAt = 0

  constructor (
    private readonly url: string,
    private readonly key: string,
    private readonly options: LongPollOptions,
    private readonly log: Logger
  ) {}

  /** The request to make now. */
  next (): LongPollRequest {
    if (!this.longPolling && Date.now() - this.pollingSince >= POLLING_BEFORE_LONG_POLL_RETRY_MS) {
      this.longPolling = true
      this.misses = 0
      this.log.info({ key: this.key }, 'trying to long-poll the metadata server again')
    }
    this.startedAt = Date.now()
    if (!this.longPolling) return { url: this.url, timeoutMs: this.options.plainTimeoutMs, longPoll: false }
    return {
      url: `${this.url}?wait_for_change=true&last_etag=${encodeURIComponent(this.etag)}&timeout_sec=${this.options.timeoutSec}`,
      timeoutMs: this.options.requestTimeoutMs,
      longPoll: true
    }
  }

  /**
   * The metadata server answered the last request, with this ETag. Returns whether the
   * request waited: a long-poll that returns is not a change by itself (it also returns
   * at timeout_sec), and one that returned at once with nothing new is a miss.
   */
  answered (etag: string | undefined): boolean {
    const waited = (etag !== undefined && etag !== this.etag) ||
      Date.now() - this.startedAt >= Math.min(QUICK_RETURN_MS, this.options.timeoutSec * 500)
    if (etag !== undefined) this.etag = etag
    if (waited) this.misses = 0
    else this.miss()
    return waited
  }

  /** The last request failed or did not wait; a few long-polls in a row that miss switch to plain polling. */
  miss (): void {
    if (!this.longPolling) return
    this.misses++
    if (this.misses < LONG_POLL_MISSES_BEFORE_POLLING) return
    this.longPolling = false
    this.pollingSince = Date.now()
    this.log.warn({ key: this.key, pollIntervalMs: this.options.pollIntervalMs }, 'long-polling the metadata server does not work; polling instead')
  }
}
