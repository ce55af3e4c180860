import type { Logger } from 'pino'
import { IdempotencyKeyReused, QueueFull, Unavailable } from './errors.js'
import type { ResponseEncoder } from './http/stored-response.js'
import { Cancellation } from './inference/cancellation.js'
import { WorkerCrashed } from './inference/instance-pool.js'
import type { ModelRegistry, ServedModel } from './inference/model-registry.js'
import type { InferenceRequest } from './inference/signature.js'
import { isFinal, JournalUnavailableError, type Journal, type PendingState, type StoredResponse } from './journal/journal.js'
import { decodeRequest, encodeRequest } from './journal/request-record.js'
import type { ReplayJob, ReplayOutcome } from './journal/replay-worker.js'
import type { Metrics } from './metrics.js'

export interface Submission {
  readonly id: string
  readonly model: ServedModel
  readonly request: InferenceRequest
  readonly fingerprint: string
  readonly respondAsync: boolean
  readonly encoder: ResponseEncoder
}

export type SubmissionOutcome =
  | { readonly kind: 'answered', readonly response: StoredResponse, readonly replayed: boolean }
  | { readonly kind: 'pending', readonly state: PendingState }
  /** Left in the journal for a peer: the client is told where to fetch the answer. */
  | { readonly kind: 'handed_off' }

/** Why a request was taken away from this instance before it finished. */
export class HandedOff extends Error {
  override readonly name = 'HandedOff'
  constructor (readonly reason: string) {
    super(`handed off (${reason})`)
  }
}

/** A request this instance accepted and has not answered yet. */
interface Active {
  readonly fingerprint: string
  state: 'queued' | 'running'
  /** The outcome, or undefined when this instance turned out not to own the request. */
  readonly done: Promise<SubmissionOutcome | undefined>
  readonly settle: (outcome: SubmissionOutcome | undefined) => void
  /** Cancelled with a HandedOff reason to give the request to the fleet. */
  readonly cancellation: Cancellation
}

export interface InferenceServiceDeps {
  readonly journal: Journal
  readonly metrics: Metrics
  readonly log: Logger
  readonly instanceId: string
  readonly idempotencyWaitMs: number
  readonly models: ModelRegistry
  /** How answers to replayed requests are stored (the encoding their clients asked for). */
  readonly replayEncoder: ResponseEncoder
}

/**
 * accept ─▶ journal ─▶ batcher ─▶ journal.complete ─▶ answer. Owns the rule that
 * nothing runs before it is journaled, and the idempotency semantics of design.md §3.
 */
export class InferenceService {
  private readonly active = new Map<string, Active>()

  constructor (private readonly deps: InferenceServiceDeps) {}

  async submit (submission: Submission): Promise<SubmissionOutcome> {
    const { id, fingerprint, model } = submission
    // A client that asked not to wait gets 202 at once, also for a retry of a request in progress.
    const wait = submission.respondAsync ? 0 : this.deps.idempotencyWaitMs
    const local = this.active.get(id)
    if (local !== undefined) {
      if (local.fingerprint !== fingerprint) throw reused(id)
      return this.awaitExisting(id, wait, local)
    }
    if (!model.batcher.tryReserve()) return this.whenQueueFull(submission, wait)

    // Registered before the journal answers, so a duplicate arriving meanwhile joins this one.
    const active = newActive(fingerprint)
    this.active.set(id, active)
    let accepted: boolean | undefined
    try {
      const result = await this.deps.journal.accept({ id, fingerprint, model: model.name, version: model.version, payload: encodeRequest(submission.request) })
      // Our own record without a local owner: an accept whose reply was lost (timeout, re-sent script). Run it.
      accepted = result.accepted || (result.sameBody && result.existing.owner === this.deps.instanceId && result.existing.state === 'queued')
      if (!result.accepted && !accepted) {
        model.batcher.releaseReservation()
        this.release(id, active)
        if (!result.sameBody) throw reused(id)
        if (isFinal(result.existing.state) && result.existing.response !== undefined) {
          return { kind: 'answered', response: result.existing.response, replayed: true }
        }
        return this.awaitExisting(id, wait)
      }
    } catch (error) {
      if (accepted === undefined) model.batcher.releaseReservation()
      this.release(id, active)
      if (error instanceof JournalUnavailableError) throw new Unavailable(error.message)
      throw error
    }

    const running = this.run(submission, active, true)
    if (submission.respondAsync) return { kind: 'pending', state: 'queued' }
    return running
  }

  /** Runs a journaled request that another instance handed off (or left behind when it died). */
  async replay (job: ReplayJob): Promise<ReplayOutcome> {
    if (this.active.has(job.id)) return 'skipped'
    const request = decodeRequest(job.payload)
    const model = this.deps.models.resolve(request.model, request.version)
    const active = newActive(job.fingerprint)
    this.active.set(job.id, active)
    const outcome = await this.run({ id: job.id, model, request, fingerprint: job.fingerprint, respondAsync: false, encoder: this.deps.replayEncoder }, active)
    if (outcome.kind === 'handed_off') return 'handed_off'
    return outcome.kind === 'answered' && outcome.response.statusCode === 200 ? 'done' : 'failed'
  }

  /** Final answer for a request no instance managed to run within the attempt limit. */
  async giveUp (id: string, attempts: number, lastError: string): Promise<void> {
    const reason = lastError === '' ? '' : `; last error: ${lastError}`
    const response = this.deps.replayEncoder.failure(500, `inference failed: gave up after ${attempts} replay attempts${reason}`)
    await this.deps.journal.complete({ id, state: 'failed', response })
  }

  isActive (id: string): boolean {
    return this.active.has(id)
  }

  get activeCount (): number {
    return this.active.size
  }

  /**
   * Gives requests to the fleet: those still queued, or every one this instance
   * holds. Their clients are answered 503 with a Location to poll.
   */
  handOff (which: 'queued' | 'all', reason: string): number {
    let count = 0
    for (const active of this.active.values()) {
      if (which === 'queued' && active.state !== 'queued') continue
      active.cancellation.cancel(new HandedOff(reason))
      count++
    }
    return count
  }

  /** Resolves when no accepted request is left on this instance. */
  async whenIdle (): Promise<void> {
    while (this.active.size > 0) await Promise.allSettled([...this.active.values()].map((a) => a.done))
  }

  /**
   * A full queue refuses new work, but a retry of a request already accepted (here or
   * on a peer) still gets its stored answer, or a 202 while it runs.
   */
  private async whenQueueFull (submission: Submission, wait: number): Promise<SubmissionOutcome> {
    const { id, model, fingerprint } = submission
    const existing = await this.journalCall(() => this.deps.journal.get(id))
    if (existing === undefined) throw new QueueFull(`model '${model.name}' has ${model.batcher.depth} requests queued; retry later`)
    if (existing.fingerprint !== undefined && existing.fingerprint !== fingerprint) throw reused(id)
    if (isFinal(existing.state) && existing.response !== undefined) return { kind: 'answered', response: existing.response, replayed: true }
    return this.awaitExisting(id, wait)
  }

  /** The answer to `id` once final (waiting up to `waitMs`), else its pending state; undefined when unknown. */
  async status (id: string, waitMs: number): Promise<SubmissionOutcome | undefined> {
    const local = this.active.get(id)
    if (local !== undefined) {
      const outcome = await withTimeout(local.done, waitMs)
      if (outcome?.kind === 'answered') return outcome
      if (this.active.has(id)) return { kind: 'pending', state: local.state }
    }
    const view = await this.journalCall(() => this.deps.journal.waitForFinal(id, waitMs))
    if (view === undefined) return undefined
    if (isFinal(view.state)) return view.response && { kind: 'answered', response: view.response, replayed: false }
    return { kind: 'pending', state: view.state }
  }

  private async awaitExisting (id: string, wait: number, local?: Active): Promise<SubmissionOutcome> {
    if (local !== undefined) {
      const outcome = await withTimeout(local.done, wait)
      if (outcome?.kind === 'answered') return { ...outcome, replayed: true }
      if (outcome !== undefined) return outcome
      if (this.active.has(id)) return { kind: 'pending', state: local.state }
    }
    const view = await this.journalCall(() => this.deps.journal.waitForFinal(id, wait))
    if (view !== undefined && isFinal(view.state) && view.response !== undefined) return { kind: 'answered', response: view.response, replayed: true }
    return { kind: 'pending', state: view !== undefined && !isFinal(view.state) ? view.state : 'queued' }
  }

  private async run (submission: Submission, active: Active, reserved = false): Promise<SubmissionOutcome> {
    const { id, model, request, encoder } = submission
    const labels = { model: model.name, version: model.version }
    const { metrics, log, journal } = this.deps
    const { cancellation } = active
    const cut = new Promise<never>((_resolve, reject) => cancellation.onCancel(reject))
    metrics.inflight.inc({ model: model.name })
    let response: StoredResponse
    try {
      const { outputs, timing } = await Promise.race([
        model.batcher.submit(request.inputs, request.outputs, { onStart: () => { active.state = 'running' }, cancellation, reserved }),
        cut
      ])
      metrics.queueDuration.observe(labels, timing.queueMs / 1000)
      metrics.inferenceDuration.observe(labels, timing.inferenceMs / 1000)
      response = encoder.success({ model: model.name, version: model.version, ...(request.clientId !== undefined && { clientId: request.clientId }), outputs }, request)
    } catch (error) {
      if (error instanceof HandedOff) {
        metrics.inflight.dec({ model: model.name })
        return this.handOver(id, active, error.reason)
      }
      if (error instanceof WorkerCrashed && journal.peersCanReplay) {
        // The thread died, not the request: the fleet (this instance included) runs it again from the journal.
        metrics.inflight.dec({ model: model.name })
        log.warn({ requestId: id, ...labels, err: error }, 'model worker died under the request; handing it to the replay stream')
        return this.handOver(id, active, 'worker_crashed')
      }
      log.warn({ requestId: id, ...labels, err: error }, 'inference failed')
      response = encoder.failure(500, `inference failed: ${(error as Error).message}`)
    }
    metrics.inflight.dec({ model: model.name })
    await journal.complete({ id, state: response.statusCode === 200 ? 'done' : 'failed', response })
    const outcome: SubmissionOutcome = { kind: 'answered', response, replayed: false }
    this.release(id, active, outcome)
    return outcome
  }

  private async handOver (id: string, active: Active, reason: string): Promise<SubmissionOutcome> {
    try {
      await this.deps.journal.handOff({ id, reason })
      this.deps.metrics.handoffs.inc({ reason })
    } catch (error) {
      // Still journaled under this instance: peers take it over when its lease expires.
      this.deps.log.warn({ requestId: id, err: error }, 'hand-off not recorded; the request stays with this instance until its lease expires')
      this.deps.metrics.handoffs.inc({ reason: 'lease_expiry' })
    }
    const outcome: SubmissionOutcome = { kind: 'handed_off' }
    this.release(id, active, outcome)
    return outcome
  }

  private release (id: string, active: Active, outcome?: SubmissionOutcome): void {
    if (this.active.get(id) === active) this.active.delete(id)
    active.settle(outcome)
  }

  private async journalCall<T> (call: () => Promise<T>): Promise<T> {
    try {
      return await call()
    } catch (error) {
      if (error instanceof JournalUnavailableError) throw new Unavailable(error.message)
      throw error
    }
  }
}

function reused (id: string): Error {
  return new IdempotencyKeyReused(`Idempotency-Key '${id}' was already used with a different request body`)
}

function newActive (fingerprint: string): Active {
  let settle!: (outcome: SubmissionOutcome | undefined) => void
  const done = new Promise<SubmissionOutcome | undefined>((resolve) => { settle = resolve })
  return { fingerprint, state: 'queued', done, settle, cancellation: new Cancellation() }
}

function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T | undefined> {
  if (ms <= 0) return Promise.race([promise, Promise.resolve(undefined)])
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms) })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
