import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyRequest } from 'fastify'
import { InvalidRequest } from '../errors.js'

/**
 * An Idempotency-Key as sent: 1-255 characters of A-Z a-z 0-9 . _ : -, bare or in the
 * IETF draft's quoted (Structured Field string) form, with whitespace around it. The
 * key is the first or the second group. `GET /infer/{id}` takes the same form (schemas.ts).
 */
export const IDEMPOTENCY_KEY_FORM = /^\s*(?:"([A-Za-z0-9._:-]{1,255})"|([A-Za-z0-9._:-]{1,255}))\s*$/

/** Why a request's Idempotency-Key header was refused, kept from `requestIdOf` until its route reads it. */
const refusedKeys = new WeakMap<IncomingMessage, string>()

/**
 * The request's id, read once when the request arrives (Fastify's `genReqId`): the
 * client's `Idempotency-Key`, so logs, headers and the journal name it alike, or a
 * new id. A key that is not valid gets a new id and is refused by the inference
 * route (`rejectRefusedKey`); the other routes ignore the header.
 */
export function requestIdOf (raw: IncomingMessage): string {
  const header = raw.headers['idempotency-key']
  if (header === undefined) return randomUUID()
  try {
    return idempotencyKey(header) as string
  } catch (error) {
    refusedKeys.set(raw, (error as Error).message)
    return randomUUID()
  }
}

/** Throws the 400 for an Idempotency-Key header `requestIdOf` refused. */
export function rejectRefusedKey (request: FastifyRequest): void {
  const refused = refusedKeys.get(request.raw)
  if (refused !== undefined) throw new InvalidRequest(refused)
}

/**
 * The request id a client chose with `Idempotency-Key`, bare or in the IETF
 * draft's quoted (Structured Field string) form; undefined when absent.
 */
export function idempotencyKey (header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined
  if (Array.isArray(header)) throw new InvalidRequest('Idempotency-Key must be sent once')
  const key = unquotedKey(header)
  if (key === undefined) {
    throw new InvalidRequest('Idempotency-Key must be 1-255 characters of A-Z a-z 0-9 . _ : - (optionally in double quotes)')
  }
  return key
}

/** The key of a value in IDEMPOTENCY_KEY_FORM; undefined when it is not in that form. */
export function unquotedKey (value: string): string | undefined {
  const match = IDEMPOTENCY_KEY_FORM.exec(value)
  return match === null ? undefined : match[1] ?? match[2]
}
