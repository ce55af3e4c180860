import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Metrics } from '../metrics.js'
import type { RedisJournal, ReplayEntry } from './redis-journal.js'

export interface ReplayJob {
  readonly id: string
  readonly payload: Buffer
  readonly fingerprint: string
}

export type ReplayOutcome = 'done' | 'failed' | 'handed_off' | 'skipped'

export interface ReplayWorkerOptions {
  readonly journal: RedisJournal
  readonly concurrency: number
  readonly maxAttempts: number
  /** An entry held this long without renewal belongs to a dead replayer and may be taken. */
  readonly claimIdleMs: number
  /** Whether this instance takes replay work now (ready, not draining). */
  readonly canTakeWork: () => boolean
  /** Whether this process is already running the request (a duplicate stream entry). */
  readonly isLocallyActive: (id: string) => boolean
  readonly execute: (job: ReplayJob) => Promise<ReplayOutcome>
  /** Records a request that failed every attempt, so its clients get a final answer. */
  readonly giveUp: (id: string, attempts: number, lastError: string) => Promise<void>
  readonly log: Logger
  readonly metrics: Metrics
}

const BLOCK_MS = 1000
const IDLE_WAIT_MS = 100
const ERROR_WAIT_MS = 500

/**
 * Consumes the fleet's replay stream with bounded concurrency: handed-off requests
 * and the work of dead instances are run here through the normal batcher and workers.
 */
export class ReplayWorker {
  private stopped = false
  private readonly held = new Set<string>()
  private reader: Redis | undefined
  private loop: Promise<void> | undefined
  private touchTimer: NodeJS.Timeout | undefined

  constructor (private readonly options: ReplayWorkerOptions) {}

  start (): void {
    this.reader = this.options.journal.createBlockingClient(BLOCK_MS)
    this.loop = this.run()
    this.touchTimer = setInterval(() => { void this.touch() }, Math.max(100, Math.floor(this.options.claimIdleMs / 3)))
  }

  /** Stops claiming; replays already running finish (or are handed off) with the rest of the instance's work. */
  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.touchTimer)
    this.reader?.disconnect()
    await this.loop
  }

  private async run (): Promise<void> {
    const { journal, log } = this.options
    let grouped = false
    while (!this.stopped) {
      const free = this.options.concurrency - this.held.size
      if (free <= 0 || !this.options.canTakeWork() || journal.unavailableReason() !== undefined) {
        await sleep(IDLE_WAIT_MS)
        continue
      }
      try {
        if (!grouped) {
          await journal.ensureReplayGroup()
          grouped = true
        }
        const entries = await journal.readReplayEntries(this.reader as Redis, free, BLOCK_MS, this.options.claimIdleMs)
        for (const entry of entries) await this.take(entry)
      } catch (error) {
        if (this.stopped) break
        if (String((error as Error).message).includes('NOGROUP')) grouped = false
        log.debug({ err: error }, 'replay read failed')
        await sleep(ERROR_WAIT_MS)
      }
    }
  }

  private async take (entry: ReplayEntry): Promise<void> {
    const { journal, metrics, log, maxAttempts } = this.options
    // An entry left unclaimed stays pending for this consumer; a peer steals it after claimIdleMs.
    if (this.stopped || !this.options.canTakeWork()) return
    if (this.options.isLocallyActive(entry.id)) {
      // Already running here (a dead replayer's entry and its take-over both point at it): one attempt, one run.
      await journal.ackReplay(entry.entryId)
      metrics.replays.inc({ outcome: 'skipped' })
      return
    }
    const claim = await journal.claimReplay(entry, maxAttempts)
    if (claim.kind === 'skip') {
      metrics.replays.inc({ outcome: 'skipped' })
      return
    }
    if (claim.kind === 'exhausted') {
      await this.options.giveUp(entry.id, claim.attempts, claim.lastError)
      await journal.ackReplay(entry.entryId)
      metrics.replays.inc({ outcome: 'gave_up' })
      log.error({ requestId: entry.id, attempts: claim.attempts, lastError: claim.lastError }, 'replay gave up: marked failed')
      return
    }
    if (!this.options.canTakeWork()) {
      // A notice arrived while claiming: give it straight back (the hand-off returns the attempt).
      await journal.handOff({ id: entry.id, reason: 'drain' })
      await journal.ackReplay(entry.entryId)
      return
    }
    this.held.add(entry.entryId)
    log.info({ requestId: entry.id, attempt: claim.attempts }, 'replaying a handed-off request')
    this.options.execute({ id: entry.id, payload: claim.payload, fingerprint: claim.fingerprint }).then(
      async (outcome) => {
        await journal.ackReplay(entry.entryId)
        metrics.replays.inc({ outcome })
        if (outcome === 'done' || outcome === 'failed') metrics.replayLatency.observe(Math.max(0, Date.now() - claim.handedOffAt) / 1000)
      },
      async (error: Error) => {
        // Not acked: after claimIdleMs the entry is claimed again, and counts as another attempt.
        metrics.replays.inc({ outcome: 'error' })
        log.warn({ requestId: entry.id, err: error }, 'replay attempt failed')
        await journal.recordReplayError(entry.id, error.message)
      }
    ).catch((error: Error) => log.warn({ requestId: entry.id, err: error }, 'replay acknowledgement failed')).finally(() => this.held.delete(entry.entryId))
  }

  private async touch (): Promise<void> {
    const { journal, metrics } = this.options
    if (journal.unavailableReason() !== undefined) return
    try {
      await journal.touchReplays([...this.held])
      metrics.replayBacklog.set(await journal.replayBacklog())
    } catch {
      // The next tick tries again; an entry not touched within claimIdleMs may be replayed twice, which first-write-wins absorbs.
    }
  }
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
