import { EventEmitter } from 'node:events'
import { isFinal, type AcceptEntry, type HandOff, type AcceptResult, type Completion, type Journal, type RequestView } from './journal.js'

interface Entry {
  view: RequestView
  readonly fingerprint: string
  expiresAt: number
}

const SWEEP_INTERVAL_MS = 10_000

/**
 * The journal of a single instance without Redis: the same contract in memory.
 * Idempotency and result retrieval work; nothing survives the process or reaches a
 * peer, so the request bytes of a record are not kept.
 */
export class EmbeddedJournal implements Journal {
  readonly kind = 'embedded' as const
  readonly peersCanReplay = false
  private readonly entries = new Map<string, Entry>()
  private readonly finals = new EventEmitter().setMaxListeners(0)
  private readonly sweeper: NodeJS.Timeout

  constructor (private readonly instanceId: string, private readonly resultTtlSeconds: number) {
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS)
    this.sweeper.unref()
  }

  unavailableReason (): undefined {
    return undefined
  }

  async accept (entry: AcceptEntry): Promise<AcceptResult> {
    const found = this.live(entry.id)
    if (found !== undefined) return { accepted: false, existing: found.view, sameBody: found.fingerprint === entry.fingerprint }
    this.entries.set(entry.id, {
      view: { id: entry.id, state: 'queued', owner: this.instanceId },
      fingerprint: entry.fingerprint,
      expiresAt: this.expiry()
    })
    return { accepted: true }
  }

  async complete (completion: Completion): Promise<void> {
    const found = this.live(completion.id)
    if (found === undefined || isFinal(found.view.state)) return
    found.view = { ...found.view, state: completion.state, response: completion.response }
    found.expiresAt = this.expiry()
    this.finals.emit(completion.id)
  }

  async handOff ({ id }: HandOff): Promise<void> {
    const found = this.live(id)
    if (found !== undefined && !isFinal(found.view.state)) found.view = { ...found.view, state: 'handed_off', owner: '' }
  }

  async get (id: string): Promise<RequestView | undefined> {
    const found = this.live(id)
    return found === undefined ? undefined : { ...found.view, fingerprint: found.fingerprint }
  }

  async waitForFinal (id: string, timeoutMs: number): Promise<RequestView | undefined> {
    const view = await this.get(id)
    if (view === undefined || isFinal(view.state) || timeoutMs <= 0) return view
    await new Promise<void>((resolve) => {
      const done = (): void => { clearTimeout(timer); this.finals.off(id, done); resolve() }
      const timer = setTimeout(done, timeoutMs)
      this.finals.on(id, done)
    })
    return this.get(id)
  }

  async close (): Promise<void> {
    clearInterval(this.sweeper)
  }

  private live (id: string): Entry | undefined {
    const entry = this.entries.get(id)
    if (entry !== undefined && entry.expiresAt <= Date.now()) {
      this.entries.delete(id)
      return undefined
    }
    return entry
  }

  private expiry (): number {
    return Date.now() + this.resultTtlSeconds * 1000
  }

  private sweep (): void {
    const now = Date.now()
    for (const [id, entry] of this.entries) if (entry.expiresAt <= now) this.entries.delete(id)
  }
}
