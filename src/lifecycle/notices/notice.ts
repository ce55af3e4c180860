/** Where a drain was asked for. */
export type NoticeSourceName = 'sigterm' | 'sigint' | 'admin' | 'aws' | 'gcp' | 'azure'

/**
 * One notice that this machine is going away. Every source emits this one type;
 * the drain state machine knows nothing about clouds.
 */
export interface Notice {
  readonly source: NoticeSourceName
  /** What the platform announced, e.g. `spot-instance-action:terminate`, `preempted`, `Preempt`. */
  readonly kind: string
  /** When the machine goes away (epoch ms), if the platform says. */
  readonly deadline?: number
  readonly description: string
}

export interface NoticeSource {
  readonly name: NoticeSourceName
  /** Starts watching; `emit` may be called more than once (a later notice can only bring the deadline closer). */
  start (emit: (notice: Notice) => void): void
  /** Called once the instance has drained, before it exits (Azure acknowledges its event here). */
  drained? (): Promise<void>
  stop (): Promise<void>
}
