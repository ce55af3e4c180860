import type { BatchRecord, FileObject } from './objects.js'

// The batch store: batch and file records, and the work queue with its claims, fencing
// epochs and commits. Two implementations: Redis (a fleet; survives instances) and
// in-process (one instance; survives nothing). docs/batches.md describes the Redis one.

export type TaskKind = 'validate' | 'shard' | 'final'

/** One unit of work in the queue: validate a batch, run one shard of it, or assemble its files. */
export interface Task {
  readonly entryId: string
  readonly kind: TaskKind
  readonly batchId: string
  /** The shard's index; 0 for the other kinds. */
  readonly shard: number
}

/** Contiguous input lines: bytes [start, end) of the input file hold lines firstLine .. firstLine + count - 1 (0-based). */
export interface ShardRange {
  readonly start: number
  readonly end: number
  readonly firstLine: number
  readonly count: number
}

export type Claim =
  /** Nothing to do (the batch moved on, the shard is complete); the task is gone from the queue. */
  | { readonly kind: 'skip' }
  /** The shard used up its attempts; its unfinished lines end in the error file. */
  | { readonly kind: 'exhausted' }
  | { readonly kind: 'validate', readonly epoch: number }
  | { readonly kind: 'final', readonly epoch: number }
  | {
    readonly kind: 'shard'
    readonly epoch: number
    readonly range: ShardRange
    /** Per line of the shard, whether it is already committed (and must not run again). */
    readonly done: readonly boolean[]
    /** The previous holder's claim lapsed without a hand-back (it died or stalled). */
    readonly takenOver: boolean
    /** The previous holder handed the shard back at a drain: this claim used no attempt. */
    readonly handedBack: boolean
  }

export interface CommittedLine {
  readonly index: number
  /** 200: the output file; anything else: the error file. */
  readonly ok: boolean
}

export type CommitResult =
  /** The claim was taken over (a newer epoch): nothing was recorded. */
  | { readonly kind: 'stale' }
  /** The batch no longer takes lines (cancelled or expired and being finalized). */
  | { readonly kind: 'sealed' }
  /** `won`: lines this part recorded first; `shardComplete`: every line of the shard is now committed. */
  | { readonly kind: 'ok', readonly won: number, readonly shardComplete: boolean }

/** A status change, applied only when the batch is in one of `from` (and the epoch still holds). */
export interface Transition {
  readonly from: readonly string[]
  /** The new status; undefined keeps the current one. */
  readonly to?: string
  readonly fields?: Readonly<Record<string, string>>
  /** Queue the batch's finalization (once). */
  readonly finalize?: boolean
  /** Only while this claim's epoch is current (validation). */
  readonly fence?: { readonly field: 'validate' | 'final', readonly epoch: number }
  /** The task to remove from the queue with the change. */
  readonly done?: Task
}

export interface BatchPlan {
  readonly model: string
  readonly version: string
  readonly total: number
  readonly shards: readonly ShardRange[]
}

export interface FinalSnapshot {
  readonly record: BatchRecord
  readonly shards: readonly ShardRange[]
  /** Committed parts: storage name → the lines whose result in that part counts. */
  readonly parts: ReadonlyMap<string, readonly number[]>
}

export interface BatchStore {
  readonly kind: 'redis' | 'memory'
  /** Why the store cannot be used right now; undefined when it can. */
  unavailableReason: () => string | undefined

  putFile: (file: FileObject) => Promise<void>
  getFile: (id: string) => Promise<FileObject | undefined>
  /** Every file, newest first. */
  listFiles: () => Promise<FileObject[]>
  deleteFile: (id: string) => Promise<boolean>

  /** Records a new batch (status `validating`) and queues its validation. */
  createBatch: (record: BatchRecord) => Promise<void>
  getBatch: (id: string) => Promise<BatchRecord | undefined>
  /** Up to `limit` batches after the batch `after` (newest first), and whether more follow. */
  listBatches: (after: string | undefined, limit: number) => Promise<{ records: BatchRecord[], hasMore: boolean }>
  /** Returns whether it applied, and the status the batch has now (undefined: no such batch). */
  transition: (id: string, change: Transition) => Promise<{ applied: boolean, status: string | undefined }>
  /** validating → in_progress with its shards queued, if `epoch` is still the validation's claim. */
  startBatch: (task: Task, epoch: number, plan: BatchPlan, now: number) => Promise<boolean>

  /** Up to `count` queued tasks for this instance: first those whose holder went silent for `idleMs`, then new ones. */
  readTasks: (count: number, idleMs: number) => Promise<Task[]>
  /** Claims a task read with readTasks, with a new fencing epoch. */
  claim: (task: Task, maxAttempts: number) => Promise<Claim>
  /** Keeps a claim from being taken over; false when it already was (a newer epoch). */
  renew: (task: Task, epoch: number) => Promise<boolean>
  /** Records a part already written to storage: each line whose result no earlier part holds is now this part's. */
  commit: (task: Task, epoch: number, part: string, lines: readonly CommittedLine[]) => Promise<CommitResult>
  /** Gives a shard back to the queue at once, without using an attempt. */
  handBack: (task: Task, epoch: number) => Promise<boolean>
  /** Seals the batch's lines and returns what finalization reads. */
  finalSnapshot: (batchId: string) => Promise<FinalSnapshot>
  /** Removes a finished task from the queue. */
  release: (task: Task) => Promise<void>

  /** Batches by status across the fleet, for the spotgate_batches gauge. */
  statusCounts: () => Promise<Record<string, number>>
  /** Batches not yet in a terminal status, for the expiry sweep. */
  activeBatches: () => Promise<string[]>
  close: () => Promise<void>
}

export const encodeRange = (r: ShardRange): string => `${r.start} ${r.end} ${r.firstLine} ${r.count}`
export function decodeRange (text: string): ShardRange {
  const [start, end, firstLine, count] = text.split(' ').map(Number)
  return { start, end, firstLine, count }
}
