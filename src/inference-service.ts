import type { Logger } from 'pino'
import { IdempotencyKeyReused, QueueFull, Unavailable } from './errors.js'
import type { ResponseEncoder } from './http/v2-encoder.js'
import type { DrainPlan, JobResult } from './inference/batcher.js'
import { Cancellation } from './inference/cancellation.js'
import { InstanceCrashed } from './inference/instance-pool.js'
import type { ModelRegistry, ServedModel } from './inference/model-registry.js'
import type { InferenceRequest } from './inference/signature.js'
import { isFinal, JournalUnavailableError, type Journal, type PendingState, type StoredResponse } from './journal/journal.js'
import { decodeRequest, encodePendingRecord } from './journal/record.js'
import type { ReplayJob, ReplayOutcome } from './journal/replay-consumer.js'
import type { Metrics } from './metrics.js'
import { withTimeout } from './wait.js'

export interface Submission {
  readonly id: string
  readonly model: ServedModel
  readonly request: InferenceRequest
  /** The version the client named, if any: part of what "the same body" means for a key. */
  readonly requestedVersion?: string
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

/** A speculative run whose accept found the request was not this instance's to run. */
class Discarded extends Error {
  override readonly name = 'Discarded'
}

/** A request this instance is running, or accepting and running speculatively. */
interface Active {
  readonly fingerprint: string
  /**
   * True once this instance must store the result: its accept was acknowledged as new, or
   * it claimed the request from the replay stream. Before that (an accept in flight) the
   * request may turn out to belong to another instance or another run.
   */
  committed: boolean
  state: 'queued' | 'running'
  /** The outcome, or undefined when this instance turned out not to own the request. */
  readonly done: Promise<SubmissionOutcome | undefined>
  readonly settle: (outcome: SubmissionOutcome | undefined) => void
  /** Resolves when this instance is done with the request: answered and stored, handed off, or not ours. */
  readonly released: Promise<void>
  readonly markReleased: () => void
  /** Cancelled with a HandedOff reason to give the request to the fleet, or Discarded. */
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
 * accept ─▶ batcher ─▶ answer ─▶ journal.complete. Owns the rule that no answer leaves
 * before its accept is acknowledged, and the idempotency semantics of the README's API
 * section. The accept is sent in the event-loop turn the request arrives in and the run
 * starts at the end of that turn, while the acknowledgement is in flight: the journal's
 * round trip overlaps the inference instead of adding to it. A request whose accept
 * fails gets 503 and its speculative result is thrown away. The completion is written
 * after the answer: inference is a pure function, so a crash in between only makes a
 * peer compute the same answer again.
 */
/** What a drain decided for one model version at its notice. */
export interface ModelDrainPlan {
  readonly model: string
  readonly version: string
  readonly queued: number
  readonly kept: number
  readonly handedOff: number
  /** The run time the estimate used (ms), undefined before any run. */
  readonly runMs: number | undefined
  readonly instances: number
}

export class InferenceService {
  private readonly active = new Map<string, Active>()
  /** Set while draining: requests that cannot finish by then are handed off as they queue. */
  private drainDeadline: number | undefined

  constructor (private readonly deps: InferenceServiceDeps) {}

  async submit (submission: Submission): Promise<SubmissionOutcome> {
    const { id, model } = submission
    const { journal, instanceId } = this.deps
    // A client that asked not to wait gets 202 at once, also for a retry of a request in progress.
    const wait = submission.respondAsync ? 0 : this.deps.idempotencyWaitMs
    const record = encodePendingRecord(submission.request, submission.requestedVersion, instanceId)
    const local = this.active.get(id)
    if (local !== undefined) {
      if (local.fingerprint !== record.fingerprint) throw reused(id)
      return this.awaitExisting(id, wait, local)
    }
    if (!model.batcher.hasRoom) return this.whenQueueFull(submission, record.fingerprint, wait)

    // Registered before the journal answers, so a duplicate arriving meanwhile joins this one.
    const active = newActive(record.fingerprint)
    this.active.set(id, active)
    const accepted = journal.accept({ id, fingerprint: record.fingerprint, record: record.bytes })
    const running = this.execute(submission, active)
    if (this.drainDeadline !== undefined) this.handOffLate(model, this.drainDeadline)
    let result
    try {
      result = await accepted
    } catch (error) {
      this.discard(id, active)
      if (error instanceof JournalUnavailableError) throw new Unavailable(error.message)
      throw error
    }
    // Our own record without a local owner: an accept whose reply was lost (timeout, re-sent script). Run it.
    const ours = result.accepted || (result.sameBody && result.existing.owner === instanceId && result.existing.state === 'queued')
    if (!ours && !result.accepted) {
      this.discard(id, active)
      if (!result.sameBody) throw reused(id)
      if (isFinal(result.existing.state) && result.existing.response !== undefined) {
        return { kind: 'answered', response: result.existing.response, replayed: true }
      }
      // A replay of the same id claimed here meanwhile is the run to wait for.
      return this.awaitExisting(id, wait, this.active.get(id))
    }
    active.committed = true
    const outcome = this.finish(submission, active, running)
    if (submission.respondAsync) return { kind: 'pending', state: 'queued' }
    return outcome
  }

  /**
   * Runs a journaled request that another instance handed off (or left behind when it
   * died). The claim made this instance the one that stores its result, so it runs even
   * when a retry of the same id is being accepted here: that retry waits for this run.
   */
  async replay (job: ReplayJob): Promise<ReplayOutcome> {
    const request = decodeRequest(job.request)
    const model = this.deps.models.resolve(request.model, request.version)
    const active = newActive(job.fingerprint)
    active.committed = true
    this.active.set(job.id, active)
    const submission: Submission = { id: job.id, model, request, respondAsync: false, encoder: this.deps.replayEncoder }
    const outcome = await this.finish(submission, active, this.execute(submission, active))
    if (outcome.kind === 'handed_off') return 'handed_off'
    return outcome.kind === 'answered' && outcome.response.statusCode === 200 ? 'done' : 'failed'
  }

  /** Final answer for a request no instance managed to run within the attempt limit. */
  async giveUp (id: string, fingerprint: string, attempts: number, lastError: string): Promise<void> {
    const reason = lastError === '' ? '' : `; last error: ${lastError}`
    const response = this.deps.replayEncoder.failure(500, `inference failed: gave up after ${attempts} replay attempts${reason}`)
    await this.deps.journal.complete({ id, fingerprint, state: 'failed', response })
  }

  /** Whether this instance runs `id` and will store its result (not merely accepting a retry of it). */
  isActive (id: string): boolean {
    return this.active.get(id)?.committed === true
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
      if (active.cancellation.cancelled !== undefined) continue
      active.cancellation.cancel(new HandedOff(reason))
      count++
    }
    return count
  }

  /**
   * At a drain's notice, and again when its deadline moves closer: keeps the queued
   * requests that can finish here by `deadline` (epoch ms) and hands off the rest, per
   * model version, from its observed run times, its instances and the queue ahead.
   */
  planDrain (deadline: number): ModelDrainPlan[] {
    this.drainDeadline = deadline
    return this.deps.models.all().map((model) => {
      const plan = this.handOffLate(model, deadline)
      return { model: model.name, version: model.version, queued: plan.queued, kept: plan.kept, handedOff: plan.late.length, runMs: plan.runMs, instances: plan.instances }
    })
  }

  private handOffLate (model: ServedModel, deadline: number): DrainPlan {
    const plan = model.batcher.planUntil(deadline)
    if (this.deps.journal.peersCanReplay) {
      for (const cancellation of plan.late) cancellation.cancel(new HandedOff('drain'))
    }
    return plan
  }

  /** Resolves when no accepted request is left on this instance. */
  async whenIdle (): Promise<void> {
    while (this.active.size > 0) await Promise.all([...this.active.values()].map((a) => a.released))
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

  /**
   * A full queue refuses new work, but a retry of a request already accepted (here or
   * on a peer) still gets its stored answer, or a 202 while it runs.
   */
  private async whenQueueFull (submission: Submission, fingerprint: string, wait: number): Promise<SubmissionOutcome> {
    const { id, model } = submission
    const existing = await this.journalCall(() => this.deps.journal.get(id))
    if (existing === undefined) throw new QueueFull(`model '${model.name}' has ${model.batcher.depth} requests queued; retry later`)
    if (existing.fingerprint !== undefined && existing.fingerprint !== fingerprint) throw reused(id)
    if (isFinal(existing.state) && existing.response !== undefined) return { kind: 'answered', response: existing.response, replayed: true }
    return this.awaitExisting(id, wait)
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

  /**
   * Queues the run. A cancellation (a hand-off or a discarded speculation) takes it out of
   * the queue, or, once it runs, stops waiting for it: a run cannot be interrupted.
   */
  private execute (submission: Submission, active: Active): Promise<JobResult> {
    const { model, request } = submission
    const { cancellation } = active
    const cut = new Promise<never>((_resolve, reject) => cancellation.onCancel(reject))
    const run = Promise.race([
      model.batcher.submit(request.inputs, request.outputs, { onStart: () => { active.state = 'running' }, cancellation }),
      cut
    ])
    // A speculative run may be discarded before anyone awaits it.
    run.catch(() => {})
    return run
  }

  /** Awaits a committed run, answers, and writes the completion after the answer. */
  private async finish (submission: Submission, active: Active, running: Promise<JobResult>): Promise<SubmissionOutcome> {
    const { id, model, request, encoder } = submission
    const labels = { model: model.name, version: model.version }
    const { log, journal } = this.deps
    const metrics = model.metrics
    metrics.inflight.inc()
    let result: JobResult | Error
    try {
      result = await running
    } catch (error) {
      result = error as Error
    } finally {
      metrics.inflight.dec()
    }
    let response: StoredResponse
    if (result instanceof HandedOff) return this.handOver(id, active, result.reason)
    if (result instanceof InstanceCrashed && journal.peersCanReplay) {
      // The model instance died, not the request: the fleet (this instance included) runs it again from the journal.
      log.warn({ requestId: id, ...labels, err: result }, 'model instance died under the request; handing it to the replay stream')
      return this.handOver(id, active, 'worker_crashed')
    }
    if (result instanceof Error) {
      log.warn({ requestId: id, ...labels, err: result }, 'inference failed')
      response = encoder.failure(500, `inference failed: ${result.message}`)
    } else {
      metrics.queueDuration.observe(result.timing.queueMs / 1000)
      response = encoder.success({ model: model.name, version: model.version, ...(request.clientId !== undefined && { clientId: request.clientId }), outputs: result.outputs }, request)
    }
    const outcome: SubmissionOutcome = { kind: 'answered', response, replayed: false }
    active.settle(outcome)
    // Kept until stored, so a retry arriving meanwhile is answered from here and not run again.
    void journal.complete({ id, fingerprint: active.fingerprint, state: response.statusCode === 200 ? 'done' : 'failed', response })
      .finally(() => this.release(id, active, outcome))
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

  /** Throws away a speculative run: its accept found the request was not this instance's. */
  private discard (id: string, active: Active): void {
    active.cancellation.cancel(new Discarded(`request '${id}' belongs to another run`))
    this.release(id, active)
  }

  private release (id: string, active: Active, outcome?: SubmissionOutcome): void {
    if (this.active.get(id) === active) this.active.delete(id)
    active.settle(outcome)
    active.markReleased()
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
  let markReleased!: () => void
  const released = new Promise<void>((resolve) => { markReleased = resolve })
  return { fingerprint, committed: false, state: 'queued', done, settle, released, markReleased, cancellation: new Cancellation() }
}
