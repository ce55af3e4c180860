import { hash } from 'node:crypto'
import { isV2Datatype, tensorBytes, tensorFromBytes } from '../inference/datatypes.js'
import { elementCount, type InferenceRequest, type Tensor } from '../inference/signature.js'
import type { FinalState, StoredResponse } from './journal.js'

// A request's journal record: one packed value per request, written once at accept and
// replaced once by its answer. The Lua scripts read only its first bytes (lua/includes/
// records.lua), so the layout below is shared with them.
//
//   pending:  'P' fingerprint(43) owner '\n' request
//   final:    'F' fingerprint(43) state('d'|'f') status(3 digits) header-length '\n' content-type '\n' body
//
// request, the canonical request bytes a peer runs again, is the same whichever encoding
// the client used:
//
//   u32 length, JSON {version, clientId?}    what the answer needs but "same body" ignores
//   u32 length, JSON {model, requested, outputs?, binaryOutputs?, inputs: [{name, datatype, shape, bytes}]}
//   each input's bytes (BYTES: 4-byte little-endian length, then UTF-8, per element)
//
// The fingerprint, which decides "same body" for an Idempotency-Key, is the SHA-256 of
// everything from the second length on: the model and the version the client asked for
// (not the one it resolved to, so a retry after a new version ships still matches), the
// outputs asked for and their encoding, and every input's name, type, shape and bytes.

export const FINGERPRINT_LENGTH = 43
const PENDING = 0x50 // 'P'
const FINAL = 0x46 // 'F'
const NEWLINE = 0x0a

interface AnswerHeader {
  readonly version: string
  readonly clientId?: string
}

interface BodyHeader {
  readonly model: string
  /** The version the client named, '' when it named none. */
  readonly requested: string
  readonly outputs?: readonly string[]
  readonly binaryOutputs?: true | readonly string[]
  readonly inputs: ReadonlyArray<{ name: string, datatype: string, shape: readonly number[], bytes: number }>
}

export interface PendingRecord {
  readonly bytes: Buffer
  readonly fingerprint: string
}

/**
 * The pending record of `request` owned by `owner`, and its fingerprint. One buffer is
 * allocated and the fingerprint hashes a slice of it.
 */
export function encodePendingRecord (request: InferenceRequest, requestedVersion: string | undefined, owner: string): PendingRecord {
  const data = request.inputs.map((t) => tensorBytes(t.datatype, t.data))
  const answer: AnswerHeader = { version: request.version, ...(request.clientId !== undefined && { clientId: request.clientId }) }
  const body: BodyHeader = {
    model: request.model,
    requested: requestedVersion ?? '',
    ...(request.outputs !== undefined && { outputs: request.outputs }),
    ...(request.binaryOutputs !== undefined && { binaryOutputs: request.binaryOutputs }),
    inputs: request.inputs.map((t, i) => ({ name: t.name, datatype: t.datatype, shape: t.shape, bytes: data[i].byteLength }))
  }
  const answerJson = JSON.stringify(answer)
  const bodyJson = JSON.stringify(body)
  const answerLength = Buffer.byteLength(answerJson)
  const bodyLength = Buffer.byteLength(bodyJson)
  let dataLength = 0
  for (const chunk of data) dataLength += chunk.byteLength
  const head = 1 + FINGERPRINT_LENGTH + owner.length + 1
  const bytes = Buffer.allocUnsafe(head + 4 + answerLength + 4 + bodyLength + dataLength)
  bytes[0] = PENDING
  let at = 1 + FINGERPRINT_LENGTH
  at += bytes.write(owner, at, 'latin1')
  bytes[at++] = NEWLINE
  at = bytes.writeUInt32BE(answerLength, at)
  at += bytes.write(answerJson, at, 'utf8')
  const fingerprinted = at
  at = bytes.writeUInt32BE(bodyLength, at)
  at += bytes.write(bodyJson, at, 'utf8')
  for (const chunk of data) {
    bytes.set(chunk, at)
    at += chunk.byteLength
  }
  const fingerprint = hash('sha256', bytes.subarray(fingerprinted), 'base64url')
  bytes.write(fingerprint, 1, 'latin1')
  return { bytes, fingerprint }
}

/** The fingerprint of a record of either kind. */
export function recordFingerprint (record: Buffer): string {
  return record.toString('latin1', 1, 1 + FINGERPRINT_LENGTH)
}

export function isFinalRecord (record: Buffer): boolean {
  return record[0] === FINAL
}

/** The owner named by a pending record's head (its bytes up to the first newline). */
export function pendingOwner (head: Buffer): string {
  const newline = head.indexOf(NEWLINE, 1 + FINGERPRINT_LENGTH)
  return head.toString('latin1', 1 + FINGERPRINT_LENGTH, newline === -1 ? head.length : newline)
}

/** The canonical request bytes inside a pending record. */
export function pendingRequest (record: Buffer): Buffer {
  return record.subarray(record.indexOf(NEWLINE, 1 + FINGERPRINT_LENGTH) + 1)
}

/** Decodes canonical request bytes (a pending record's request, or what a replay claim returns). */
export function decodeRequest (bytes: Buffer): InferenceRequest {
  const answerLength = bytes.readUInt32BE(0)
  const answer = JSON.parse(bytes.toString('utf8', 4, 4 + answerLength)) as AnswerHeader
  let at = 4 + answerLength
  const bodyLength = bytes.readUInt32BE(at)
  at += 4
  const body = JSON.parse(bytes.toString('utf8', at, at + bodyLength)) as BodyHeader
  at += bodyLength
  const inputs: Tensor[] = body.inputs.map((input) => {
    if (!isV2Datatype(input.datatype)) throw new Error(`journaled input '${input.name}' has unknown datatype ${input.datatype}`)
    const data = tensorFromBytes(input.datatype, bytes.subarray(at, at + input.bytes), elementCount(input.shape))
    at += input.bytes
    return { name: input.name, datatype: input.datatype, shape: input.shape, data }
  })
  if (at !== bytes.length) throw new Error('journaled request has trailing bytes')
  return {
    model: body.model,
    version: answer.version,
    ...(answer.clientId !== undefined && { clientId: answer.clientId }),
    ...(body.outputs !== undefined && { outputs: body.outputs }),
    ...(body.binaryOutputs !== undefined && { binaryOutputs: body.binaryOutputs }),
    inputs
  }
}

/** The final record of an answer. */
export function encodeFinalRecord (fingerprint: string, state: FinalState, response: StoredResponse): Buffer {
  const status = String(response.statusCode).padStart(3, '0').slice(-3)
  const head = `F${fingerprint}${state === 'done' ? 'd' : 'f'}${status}${response.headerLength ?? ''}\n${response.contentType}\n`
  const headLength = Buffer.byteLength(head)
  const bytes = Buffer.allocUnsafe(headLength + response.body.length)
  bytes.write(head, 0, 'latin1')
  response.body.copy(bytes, headLength)
  return bytes
}

export interface FinalRecord {
  readonly fingerprint: string
  readonly state: FinalState
  readonly response: StoredResponse
}

export function decodeFinalRecord (record: Buffer): FinalRecord {
  const at = 1 + FINGERPRINT_LENGTH
  const state: FinalState = record[at] === 0x64 ? 'done' : 'failed'
  const statusCode = Number(record.toString('latin1', at + 1, at + 4))
  const headerEnd = record.indexOf(NEWLINE, at + 4)
  const typeEnd = record.indexOf(NEWLINE, headerEnd + 1)
  const headerLength = headerEnd > at + 4 ? Number(record.toString('latin1', at + 4, headerEnd)) : undefined
  return {
    fingerprint: recordFingerprint(record),
    state,
    response: {
      statusCode,
      contentType: record.toString('latin1', headerEnd + 1, typeEnd),
      body: record.subarray(typeEnd + 1),
      ...(headerLength !== undefined && { headerLength })
    }
  }
}
