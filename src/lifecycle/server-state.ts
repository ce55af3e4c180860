import type { Metrics } from '../metrics.js'

export type Phase = 'starting' | 'ready' | 'draining' | 'stopped'

/**
 * Where the instance is in its life: starting ──▶ ready ──▶ draining ──▶ stopped.
 * Readiness also needs every registered check to pass (the journal, for one).
 */
export class ServerState {
  private current: Phase = 'starting'
  private closing = false
  private readonly checks: Array<() => string | undefined> = []

  constructor (private readonly metrics: Metrics) {
    metrics.setReadinessProbe(() => this.unreadyReasons().length === 0)
    metrics.draining.set(0)
  }

  get phase (): Phase {
    return this.current
  }

  get draining (): boolean {
    return this.current === 'draining' || this.current === 'stopped'
  }

  /** False once a drain's grace period is over: new inference requests get 503. */
  get acceptingRequests (): boolean {
    return !this.closing
  }

  /**
   * Why a new inference request is refused now (503), or undefined when it may be taken:
   * the one gate every inference route passes. During a drain's grace period requests
   * are still taken; a model that is not loaded is the registry's to refuse.
   */
  refusal (): string | undefined {
    if (this.closing) return 'draining: this instance takes no new requests'
    if (this.current !== 'ready' && this.current !== 'draining') return `not ready: ${this.unreadyReasons().join(', ')}`
    return undefined
  }

  stopAcceptingRequests (): void {
    this.closing = true
  }

  /** A check returns why the instance is not ready, or undefined when it is fine. */
  addReadinessCheck (check: () => string | undefined): void {
    this.checks.push(check)
  }

  unreadyReasons (): string[] {
    const reasons: string[] = []
    if (this.current === 'starting') reasons.push('models are loading')
    if (this.current === 'draining') reasons.push('draining')
    if (this.current === 'stopped') reasons.push('stopped')
    for (const check of this.checks) {
      const reason = check()
      if (reason !== undefined) reasons.push(reason)
    }
    return reasons
  }

  enter (phase: Phase): void {
    if (phase === this.current) return
    this.current = phase
    this.metrics.draining.set(this.draining ? 1 : 0)
  }
}
