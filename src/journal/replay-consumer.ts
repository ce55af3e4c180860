import type { Logger } from 'pino'
import type { Metrics } from '../metrics.js'
import { sleep } from '../wait.js'
import type { ReplayEntry, ReplayStore } from './redis/fleet-store.js'

export interface ReplayJob {
  readonly id: string
  /** The canonical request bytes (record.ts). */
  readonly request: Buffer
  readonly fingerprint: string
}

export type ReplayOutcome = 'done' | 'failed' | 'handed_off' | 'skipped'

export interface ReplayConsumerOptions {
  readonly store: ReplayStore
  readonly concurrency: number
  readonly maxAttempts: number
  /** An entry held this long without renewal belongs to a dead replayer and may be taken. */
  readonly claimIdleMs: number
  /** Whether this instance takes replay work now (ready, not draining). */
  readonly canTakeWork: () => boolean
  readonly execute: (job: ReplayJob) => Promise<ReplayOutcome>
  /** Gives a claimed request straight back to the fleet (a notice arrived meanwhile). */
  readonly handOff: (id: string, reason: string) => Promise<void>
  /** Records a request that failed every attempt, so its clients get a final answer. */
  readonly giveUp: (id: string, fingerprint: string, attempts: number, lastError: string) => Promise<void>
  readonly log: Logger
  readonly metrics: Metrics
}

const BLOCK_MS = 1000
const IDLE_WAIT_MS = 100
/** With several partitions there is no one stream to block on: an empty sweep waits this long. */
const EMPTY_SWEEP_WAIT_MS = 250
const ERROR_WAIT_MS = 500

/**
 * Consumes the fleet's replay streams with bounded concurrency: handed-off requests and
 * the work of dead instances are run here through the normal batcher and model instances.
 */
export class ReplayConsumer {
  private stopped = false
  private readonly held = new Map<string, ReplayEntry>()
  private loop: Promise<void> | undefined
  private touchTimer: NodeJS.Timeout | undefined

  constructor (private readonly options: ReplayConsumerOptions) {}

  start (): void {
    this.loop = this.run()
    this.touchTimer = setInterval(() => { void this.touch() }, Math.max(100, Math.floor(this.options.claimIdleMs / 3)))
  }

  /** Stops claiming; replays already running finish (or are handed off) with the rest of the instance's work. */
  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.touchTimer)
    this.options.store.stopReading()
    await this.loop
  }

  private async run (): Promise<void> {
    const { store, log } = this.options
    while (!this.stopped) {
      const free = this.options.concurrency - this.held.size
      if (free <= 0 || !this.options.canTakeWork() || store.unavailableReason() !== undefined) {
        await sleep(IDLE_WAIT_MS)
        continue
      }
      try {
        const started = Date.now()
        const entries = await store.readReplayEntries(free, this.options.claimIdleMs, BLOCK_MS)
        for (const entry of entries) await this.take(entry)
        // A read that found nothing without blocking (several partitions) waits before the next sweep.
        if (entries.length === 0) await sleep(EMPTY_SWEEP_WAIT_MS - (Date.now() - started))
      } catch (error) {
        if (this.stopped) break
        log.debug({ err: error }, 'replay read failed')
        await sleep(ERROR_WAIT_MS)
      }
    }
  }

  private async take (entry: ReplayEntry): Promise<void> {
    const { store, metrics, log, maxAttempts } = this.options
    // An entry left unclaimed stays pending for this consumer; a peer steals it after claimIdleMs.
    if (this.stopped || !this.options.canTakeWork()) return
    // Whether the entry is still needed is the journal's call (the claim script), never this
    // process's memory: a retry of the same id whose accept is in flight here would otherwise
    // look like a run that will store the answer, and the entry would be dropped with nobody to run it.
    const claim = await store.claimReplay(entry, maxAttempts)
    if (claim.kind === 'skip') {
      metrics.replays.inc({ outcome: 'skipped' })
      return
    }
    if (claim.kind === 'exhausted') {
      await this.options.giveUp(entry.id, claim.fingerprint, claim.attempts, claim.lastError)
      await store.ackReplay(entry)
      metrics.replays.inc({ outcome: 'gave_up' })
      log.error({ requestId: entry.id, attempts: claim.attempts, lastError: claim.lastError }, 'replay gave up: marked failed')
      return
    }
    if (!this.options.canTakeWork()) {
      // A notice arrived while claiming: give it straight back (the hand-off returns the attempt).
      await this.options.handOff(entry.id, 'drain')
      await store.ackReplay(entry)
      return
    }
    this.held.set(entry.entryId, entry)
    log.info({ requestId: entry.id, attempt: claim.attempts }, 'replaying a handed-off request')
    this.options.execute({ id: entry.id, request: claim.request, fingerprint: claim.fingerprint }).then(
      async (outcome) => {
        await store.ackReplay(entry)
        metrics.replays.inc({ outcome })
        if (outcome === 'done' || outcome === 'failed') metrics.replayLatency.observe(Math.max(0, Date.now() - claim.handedOffAt) / 1000)
      },
      async (error: Error) => {
        // Not acked: after claimIdleMs the entry is claimed again, and counts as another attempt.
        metrics.replays.inc({ outcome: 'error' })
        log.warn({ requestId: entry.id, err: error }, 'replay attempt failed')
        await store.recordReplayError(entry.id, error.message)
      }
    ).catch((error: Error) => log.warn({ requestId: entry.id, err: error }, 'replay acknowledgement failed')).finally(() => this.held.delete(entry.entryId))
  }

  private async touch (): Promise<void> {
    const { store, metrics } = this.options
    if (store.unavailableReason() !== undefined) return
    try {
      await store.touchReplays([...this.held.values()])
      metrics.replayBacklog.set(await store.replayBacklog())
    } catch {
      // The next tick tries again; an entry not touched within claimIdleMs may be replayed twice, which first-write-wins absorbs.
    }
  }
}
