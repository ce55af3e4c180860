import { createHash, randomBytes } from 'node:crypto'

// The OpenAI Files and Batches objects as spotgate answers them (docs/batches.md),
// the ids they carry, and the flat record the batch stores keep them in.

export type BatchStatus = 'validating' | 'failed' | 'in_progress' | 'finalizing' | 'completed' | 'expired' | 'cancelling' | 'cancelled'
export const BATCH_STATUSES: readonly BatchStatus[] = ['validating', 'failed', 'in_progress', 'finalizing', 'completed', 'expired', 'cancelling', 'cancelled']
export const TERMINAL_STATUSES: readonly BatchStatus[] = ['failed', 'completed', 'expired', 'cancelled']

/** How a batch that stops running ends, which decides its final status and the code of its unrun lines. */
export type Ending = 'completed' | 'cancelled' | 'expired'

export type FilePurpose = 'batch' | 'batch_output'

export interface FileObject {
  readonly id: string
  readonly object: 'file'
  readonly bytes: number
  readonly created_at: number
  readonly filename: string
  readonly purpose: FilePurpose
}

export interface BatchError {
  readonly code: string
  readonly line: number | null
  readonly message: string
  readonly param: string | null
}

export interface BatchObject {
  readonly id: string
  readonly object: 'batch'
  readonly endpoint: string
  readonly errors: { readonly object: 'list', readonly data: readonly BatchError[] } | null
  readonly input_file_id: string
  readonly completion_window: string
  readonly status: BatchStatus
  readonly output_file_id: string | null
  readonly error_file_id: string | null
  readonly created_at: number
  readonly in_progress_at: number | null
  readonly expires_at: number
  readonly finalizing_at: number | null
  readonly completed_at: number | null
  readonly failed_at: number | null
  readonly expired_at: number | null
  readonly cancelling_at: number | null
  readonly cancelled_at: number | null
  readonly request_counts: { readonly total: number, readonly completed: number, readonly failed: number }
  readonly metadata: Record<string, string> | null
}

/** A batch as the stores keep it: one string per field (a Redis hash, or a Map in one process). */
export type BatchRecord = Readonly<Record<string, string>>

export const FILE_ID = /^file-[A-Za-z0-9_-]{24}$/
export const BATCH_ID = /^batch_[A-Za-z0-9_-]{24}$/

/** 144 random bits: an id nobody can guess, which also never needs escaping in a key or a name. */
function randomId (): string {
  return randomBytes(18).toString('base64url')
}

function derivedId (...parts: Array<string | number>): string {
  return createHash('sha256').update(parts.join('\n')).digest('base64url').slice(0, 24)
}

export const newFileId = (): string => `file-${randomId()}`
export const newBatchId = (): string => `batch_${randomId()}`
export const isFileId = (id: string): boolean => FILE_ID.test(id)
export const isBatchId = (id: string): boolean => BATCH_ID.test(id)

/**
 * The output and error files' ids follow from the batch's: a finalization that runs again
 * after a crash writes the same files under the same ids.
 */
export const outputFileId = (batchId: string, which: 'output' | 'error'): string => `file-${derivedId(batchId, which)}`
/** An output line's `id` and its response's `request_id`, the same whichever instance ran the line. */
export const lineRequestId = (batchId: string, line: number): string => `batch_req_${derivedId(batchId, 'line', line)}`
export const responseRequestId = (batchId: string, line: number): string => `req_${derivedId(batchId, 'request', line)}`

/** Storage names, made only from validated ids and numbers. */
export const storageNames = {
  file: (fileId: string) => `files/${fileId}`,
  partsFolder: (batchId: string) => `batches/${batchId}/parts/`,
  part: (batchId: string, shard: number, epoch: number, sequence: number) => `batches/${batchId}/parts/${shard}.${epoch}.${sequence}`
}

const seconds = (value: string | undefined): number | null => (value === undefined || value === '' ? null : Number(value))

export function batchObject (record: BatchRecord): BatchObject {
  const errors = record.errors !== undefined && record.errors !== '' ? JSON.parse(record.errors) as BatchError[] : undefined
  return {
    id: record.id,
    object: 'batch',
    endpoint: record.endpoint,
    errors: errors === undefined ? null : { object: 'list', data: errors },
    input_file_id: record.input_file_id,
    completion_window: record.completion_window,
    status: record.status as BatchStatus,
    output_file_id: record.output_file_id !== undefined && record.output_file_id !== '' ? record.output_file_id : null,
    error_file_id: record.error_file_id !== undefined && record.error_file_id !== '' ? record.error_file_id : null,
    created_at: Number(record.created_at),
    in_progress_at: seconds(record.in_progress_at),
    expires_at: Number(record.expires_at),
    finalizing_at: seconds(record.finalizing_at),
    completed_at: seconds(record.completed_at),
    failed_at: seconds(record.failed_at),
    expired_at: seconds(record.expired_at),
    cancelling_at: seconds(record.cancelling_at),
    cancelled_at: seconds(record.cancelled_at),
    request_counts: { total: Number(record.total ?? 0), completed: Number(record.completed ?? 0), failed: Number(record.failed ?? 0) },
    metadata: record.metadata !== undefined && record.metadata !== '' ? JSON.parse(record.metadata) as Record<string, string> : null
  }
}

export function fileRecord (file: FileObject): Record<string, string> {
  return { id: file.id, bytes: String(file.bytes), created_at: String(file.created_at), filename: file.filename, purpose: file.purpose }
}

export function fileObject (record: Readonly<Record<string, string>>): FileObject {
  return { id: record.id, object: 'file', bytes: Number(record.bytes), created_at: Number(record.created_at), filename: record.filename, purpose: record.purpose as FilePurpose }
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000)
