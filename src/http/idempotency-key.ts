import { InvalidRequest } from '../errors.js'

const KEY = /^[A-Za-z0-9._:-]{1,255}$/

/** The key when the header holds a valid one, else undefined (never throws: for request ids in logs). */
export function validKeyOrUndefined (header: string | string[] | undefined): string | undefined {
  try {
    return idempotencyKey(header)
  } catch {
    return undefined
  }
}

/**
 * The request id a client chose with `Idempotency-Key`, bare or in the IETF
 * draft's quoted (Structured Field string) form; undefined when absent.
 */
export function idempotencyKey (header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined
  if (Array.isArray(header)) throw new InvalidRequest('Idempotency-Key must be sent once')
  const value = header.trim()
  const key = value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value
  if (!KEY.test(key)) {
    throw new InvalidRequest('Idempotency-Key must be 1-255 characters of A-Z a-z 0-9 . _ : - (optionally in double quotes)')
  }
  return key
}
