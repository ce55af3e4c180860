import type { Logger } from 'pino'
import type { Notice } from './notice.js'

/**
 * Where a source hands its notices: lets one through when it is new or its deadline
 * moved earlier, logs it, and keeps a throwing listener from ending the source's loop.
 * Polling sees the same notice again and again (the AWS mock even moves `time` later on
 * each answer); the drain state machine would ignore the repeats, the log should not show them.
 */
export class NoticeOutlet {
  private readonly seen = new Map<string, number | undefined>()
  private emit: ((notice: Notice) => void) | undefined

  constructor (private readonly log: Logger) {}

  connect (emit: (notice: Notice) => void): void {
    this.emit = emit
  }

  /** `key` names the notice across polls (a kind, an event id). Returns whether it went out. */
  deliver (key: string, notice: Notice): boolean {
    if (!this.isNewOrCloser(key, notice.deadline)) return false
    this.log.warn({
      kind: notice.kind,
      ...(notice.deadline !== undefined && { deadline: new Date(notice.deadline).toISOString(), msLeft: notice.deadline - Date.now() })
    }, `preemption notice: ${notice.description}`)
    try {
      this.emit?.(notice)
    } catch (error) {
      this.log.error({ err: error }, 'notice listener threw')
    }
    return true
  }

  private isNewOrCloser (key: string, deadline: number | undefined): boolean {
    if (!this.seen.has(key)) {
      this.seen.set(key, deadline)
      return true
    }
    const previous = this.seen.get(key)
    if (deadline !== undefined && (previous === undefined || deadline < previous)) {
      this.seen.set(key, deadline)
      return true
    }
    return false
  }
}
