/**
 * A one-shot cancel signal for a request: what AbortController does, without the
 * EventTarget machinery that costs measurable time when made once per request.
 */
export class Cancellation {
  private reason: Error | undefined
  private listeners: Array<(reason: Error) => void> = []

  get cancelled (): Error | undefined {
    return this.reason
  }

  /** Runs `listener` on cancel (at once if already cancelled). */
  onCancel (listener: (reason: Error) => void): void {
    if (this.reason !== undefined) listener(this.reason)
    else this.listeners.push(listener)
  }

  cancel (reason: Error): void {
    if (this.reason !== undefined) return
    this.reason = reason
    const listeners = this.listeners
    this.listeners = []
    for (const listener of listeners) listener(reason)
  }
}
