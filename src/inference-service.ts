import type { Logger } from 'pino'
import { IdempotencyKeyReused, QueueFull, Unavailable } from './errors.js'
import type { ResponseEncoder } from './http/stored-response.js'
import type { ServedModel } from './inference/model-registry.js'
import type { InferenceRequest } from './inference/signature.js'
import { isFinal, JournalUnavailableError, type Journal, type PendingState, type StoredResponse } from './journal/journal.js'
import { encodeRequest } from './journal/request-record.js'
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

/** A request this instance accepted and has not answered yet. */
interface Active {
  readonly fingerprint: string
  state: 'queued' | 'running'
  /** The answer, or undefined when this instance turned out not to own the request. */
  readonly done: Promise<StoredResponse | undefined>
  readonly settle: (response: StoredResponse | undefined) => void
}

export interface InferenceServiceDeps {
  readonly journal: Journal
  readonly metrics: Metrics
  readonly log: Logger
  readonly instanceId: string
  readonly idempotencyWaitMs: number
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
    const local = this.active.get(id)
    if (local !== undefined) {
      if (local.fingerprint !== fingerprint) throw reused(id)
      return this.awaitExisting(id, local)
    }
    if (!model.batcher.hasRoom) throw new QueueFull(`model '${model.name}' has ${model.batcher.depth} requests queued; retry later`)

    // Registered before the journal answers, so a duplicate arriving meanwhile joins this one.
    const active = newActive(fingerprint)
    this.active.set(id, active)
    let accepted: boolean
    try {
      const result = await this.deps.journal.accept({ id, fingerprint, model: model.name, version: model.version, payload: encodeRequest(submission.request) })
      // Our own record without a local owner: an accept whose reply was lost (timeout, re-sent script). Run it.
      accepted = result.accepted || (result.sameBody && result.existing.owner === this.deps.instanceId && result.existing.state === 'queued')
      if (!result.accepted && !accepted) {
        this.release(id, active)
        if (!result.sameBody) throw reused(id)
        if (isFinal(result.existing.state) && result.existing.response !== undefined) {
          return { kind: 'answered', response: result.existing.response, replayed: true }
        }
        return this.awaitExisting(id)
      }
    } catch (error) {
      this.release(id, active)
      if (error instanceof JournalUnavailableError) throw new Unavailable(error.message)
      throw error
    }

    const running = this.run(submission, active)
    if (submission.respondAsync) return { kind: 'pending', state: 'queued' }
    return { kind: 'answered', response: await running, replayed: false }
  }

  /** The answer to `id` once final (waiting up to `waitMs`), else its pending state; undefined when unknown. */
  async status (id: string, waitMs: number): Promise<SubmissionOutcome | undefined> {
    const local = this.active.get(id)
    if (local !== undefined) {
      const response = await withTimeout(local.done, waitMs)
      if (response !== undefined) return { kind: 'answered', response, replayed: false }
      if (this.active.has(id)) return { kind: 'pending', state: local.state }
    }
    const view = await this.journalCall(() => this.deps.journal.waitForFinal(id, waitMs))
    if (view === undefined) return undefined
    if (isFinal(view.state)) return view.response && { kind: 'answered', response: view.response, replayed: false }
    return { kind: 'pending', state: view.state }
  }

  private async awaitExisting (id: string, local?: Active): Promise<SubmissionOutcome> {
    const wait = this.deps.idempotencyWaitMs
    if (local !== undefined) {
      const response = await withTimeout(local.done, wait)
      if (response !== undefined) return { kind: 'answered', response, replayed: true }
      if (this.active.has(id)) return { kind: 'pending', state: local.state }
    }
    const view = await this.journalCall(() => this.deps.journal.waitForFinal(id, wait))
    if (view !== undefined && isFinal(view.state) && view.response !== undefined) return { kind: 'answered', response: view.response, replayed: true }
    return { kind: 'pending', state: view !== undefined && !isFinal(view.state) ? view.state : 'queued' }
  }

  private async run (submission: Submission, active: Active): Promise<StoredResponse> {
    const { id, model, request, encoder } = submission
    const labels = { model: model.name, version: model.version }
    const { metrics } = this.deps
    metrics.inflight.inc({ model: model.name })
    let response: StoredResponse
    try {
      const { outputs, timing } = await model.batcher.submit(request.inputs, request.outputs, () => { active.state = 'running' })
      metrics.queueDuration.observe(labels, timing.queueMs / 1000)
      metrics.inferenceDuration.observe(labels, timing.inferenceMs / 1000)
      response = encoder.success({ model: model.name, version: model.version, ...(request.clientId !== undefined && { clientId: request.clientId }), outputs })
    } catch (error) {
      this.deps.log.warn({ requestId: id, ...labels, err: error }, 'inference failed')
      response = encoder.failure(500, `inference failed: ${(error as Error).message}`)
    } finally {
      metrics.inflight.dec({ model: model.name })
    }
    await this.deps.journal.complete({ id, state: response.statusCode === 200 ? 'done' : 'failed', response })
    this.release(id, active, response)
    return response
  }

  private release (id: string, active: Active, response?: StoredResponse): void {
    if (this.active.get(id) === active) this.active.delete(id)
    active.settle(response)
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
  let settle!: (response: StoredResponse | undefined) => void
  const done = new Promise<StoredResponse | undefined>((resolve) => { settle = resolve })
  return { fingerprint, state: 'queued', done, settle }
}

function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T | undefined> {
  if (ms <= 0) return Promise.race([promise, Promise.resolve(undefined)])
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms) })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
