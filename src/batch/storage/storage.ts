import type { Readable } from 'node:stream'

/**
 * Where batch files live: the uploaded input, the parts workers write and the assembled
 * output and error files. Every object is written once, whole, by one writer under a
 * name no other writer uses; nothing appends to a shared object (NFS does not make that
 * safe), so a reader sees an object entirely or not at all.
 *
 * Names are relative, made only of `A-Z a-z 0-9 . _ - /` and never `..`: they come from
 * ids the gateway made and validated, never from a client's path.
 */
export interface BatchStorage {
  /** `file` or `s3`, for logs. */
  readonly kind: string
  /** Writes `data` under `name` (replacing an object of that name as a whole). */
  put: (name: string, data: Buffer) => Promise<void>
  /** The whole object; undefined when there is none. */
  get: (name: string) => Promise<Buffer | undefined>
  /** The object as a stream with its size, for sending it on without holding it whole; undefined when there is none. */
  read: (name: string) => Promise<StoredObject | undefined>
  /** Bytes `start` (inclusive) to `end` (exclusive) of an object, so an instance reads only its shard. */
  getRange: (name: string, start: number, end: number) => Promise<Buffer>
  /** Removes an object; no error when there is none. */
  delete: (name: string) => Promise<void>
  /** Names of the objects under `prefix` (a folder ending in `/`). */
  list: (prefix: string) => Promise<string[]>
  close: () => Promise<void>
}

/** An object being read: its length in bytes and its content. */
export interface StoredObject {
  readonly size: number
  readonly body: Readable
}

const NAME = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/?$/

/** Throws unless `name` is a relative object name without `..` segments. */
export function checkName (name: string): string {
  if (!NAME.test(name) || name.split('/').some((segment) => segment === '.' || segment === '..')) {
    throw new Error(`invalid storage object name ${JSON.stringify(name.slice(0, 100))}`)
  }
  return name
}

export class StorageError extends Error {
  override readonly name = 'StorageError'
}
