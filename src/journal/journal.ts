/**
 * The request journal: what makes "accepted" mean "will be answered". Two
 * implementations share this contract: Redis (a fleet) and embedded (one process).
 */

export type PendingState = 'queued' | 'running' | 'handed_off' | 'replaying'
export type FinalState = 'done' | 'failed'
export type RequestState = PendingState | FinalState

export function isFinal (state: RequestState): state is FinalState {
  return state === 'done' || state === 'failed'
}

/** The HTTP answer to a request, stored so any instance can give it again. */
export interface StoredResponse {
  readonly statusCode: number
  readonly contentType: string
  readonly body: Buffer
  /** Length of the JSON header of a binary answer (Inference-Header-Content-Length). */
  readonly headerLength?: number
}

export interface AcceptEntry {
  readonly id: string
  /** Hash of the request as the client meant it; a reused key with another fingerprint is refused. */
  readonly fingerprint: string
  /** The packed pending record (record.ts): the owner and the canonical request bytes a peer needs to run it again. */
  readonly record: Buffer
}

export type AcceptResult =
  | { readonly accepted: true }
  | { readonly accepted: false, readonly existing: RequestView, readonly sameBody: boolean }

export interface RequestView {
  readonly id: string
  readonly state: RequestState
  readonly owner: string
  readonly response?: StoredResponse
  /** The accepted request's fingerprint (from `get`), to tell a retry from a reused key. */
  readonly fingerprint?: string
}

export interface Completion {
  readonly id: string
  /** The accepted request's fingerprint, kept with its answer. */
  readonly fingerprint: string
  readonly state: FinalState
  readonly response: StoredResponse
}

export interface HandOff {
  readonly id: string
  readonly reason: string
}

export interface Journal {
  readonly kind: 'redis' | 'embedded'
  /** Whether a request handed off here can be finished by a peer (false for the in-process journal). */
  readonly peersCanReplay: boolean
  /** Records a request before it runs. Rejects (and the caller answers 503) when the journal cannot take it. */
  accept (entry: AcceptEntry): Promise<AcceptResult>
  /** Stores the answer; the first completion of an id wins, later ones are ignored. */
  complete (completion: Completion): Promise<void>
  /** Leaves pending requests to peers (the README's "The journal and the guarantee", item 2); final ones are left alone. */
  handOff (handOff: HandOff): Promise<void>
  get (id: string): Promise<RequestView | undefined>
  /** The request once it is final, or its latest view when `timeoutMs` passes first. */
  waitForFinal (id: string, timeoutMs: number): Promise<RequestView | undefined>
  /** Why the journal cannot take requests right now; undefined when it can. */
  unavailableReason (): string | undefined
  close (): Promise<void>
}

export class JournalUnavailableError extends Error {
  override readonly name = 'JournalUnavailableError'
}
