import type { Notice, NoticeSource } from './notice.js'

/** An operator's `POST /admin/drain`; the route calls `trigger`. */
export class AdminSource implements NoticeSource {
  readonly name = 'admin' as const
  private emit: ((notice: Notice) => void) | undefined

  start (emit: (notice: Notice) => void): void {
    this.emit = emit
  }

  /** Optional deadline in ms from now, for an operator who knows how long the machine has. */
  trigger (deadlineInMs?: number): void {
    this.emit?.({
      source: 'admin',
      kind: 'admin-drain',
      ...(deadlineInMs !== undefined && { deadline: Date.now() + deadlineInMs }),
      description: 'drain requested through POST /admin/drain'
    })
  }

  async stop (): Promise<void> {
    this.emit = undefined
  }
}
