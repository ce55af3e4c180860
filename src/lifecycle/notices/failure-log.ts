import type { Logger } from 'pino'
import type { Metrics } from '../../metrics.js'
import type { NoticeSourceName } from './notice.js'

// A metadata service that stays down is polled every second or so: one warning per
// minute says so without burying the rest of the log.
const REPEAT_WARNING_MS = 60_000

/**
 * Counts and logs a source's failures (unreachable service, error status, unparsable
 * answer): every one is counted, the first of a run and then one a minute are warnings,
 * and the end of a run is logged once.
 */
export class FailureLog {
  private inARow = 0
  private lastWarningAt = 0

  constructor (
    private readonly source: NoticeSourceName,
    private readonly log: Logger,
    private readonly metrics: Pick<Metrics, 'noticeSourceErrors'>
  ) {}

  failure (what: string, reason: string): void {
    this.metrics.noticeSourceErrors.inc({ source: this.source })
    this.inARow++
    const now = Date.now()
    const fields = { failuresInARow: this.inARow, reason }
    if (this.inARow === 1 || now - this.lastWarningAt >= REPEAT_WARNING_MS) {
      this.lastWarningAt = now
      this.log.warn(fields, `${what} failed`)
    } else {
      this.log.debug(fields, `${what} failed`)
    }
  }

  success (): void {
    if (this.inARow === 0) return
    this.log.info({ failuresInARow: this.inARow }, 'metadata service answering again')
    this.inARow = 0
  }
}
