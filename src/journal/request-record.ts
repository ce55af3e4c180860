import { createHash } from 'node:crypto'
import { bytesOf, isV2Datatype, viewOf } from '../inference/datatypes.js'
import type { InferenceRequest, Tensor } from '../inference/signature.js'

// The canonical bytes of a request, as journaled: a length-prefixed JSON header
// followed by each input's raw tensor bytes. Compact for large tensors, and the
// same whatever encoding (JSON or binary) the client used.

interface Header {
  readonly model: string
  readonly version: string
  readonly clientId?: string
  readonly outputs?: readonly string[]
  readonly binaryOutputs?: true | readonly string[]
  readonly inputs: ReadonlyArray<{ name: string, datatype: string, shape: readonly number[], bytes: number }>
}

export function encodeRequest (request: InferenceRequest): Buffer {
  const header: Header = {
    model: request.model,
    version: request.version,
    ...(request.clientId !== undefined && { clientId: request.clientId }),
    ...(request.outputs !== undefined && { outputs: request.outputs }),
    ...(request.binaryOutputs !== undefined && { binaryOutputs: request.binaryOutputs }),
    inputs: request.inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape, bytes: t.data.byteLength }))
  }
  const json = Buffer.from(JSON.stringify(header))
  const prefix = Buffer.alloc(4)
  prefix.writeUInt32BE(json.length)
  return Buffer.concat([prefix, json, ...request.inputs.map((t) => bytesOf(t.data))])
}

export function decodeRequest (bytes: Buffer): InferenceRequest {
  const length = bytes.readUInt32BE(0)
  const header = JSON.parse(bytes.subarray(4, 4 + length).toString('utf8')) as Header
  let offset = 4 + length
  const inputs: Tensor[] = header.inputs.map((input) => {
    if (!isV2Datatype(input.datatype)) throw new Error(`journaled input '${input.name}' has unknown datatype ${input.datatype}`)
    const data = viewOf(input.datatype, bytes.subarray(offset, offset + input.bytes))
    offset += input.bytes
    return { name: input.name, datatype: input.datatype, shape: input.shape, data }
  })
  if (offset !== bytes.length) throw new Error('journaled request has trailing bytes')
  return {
    model: header.model,
    version: header.version,
    ...(header.clientId !== undefined && { clientId: header.clientId }),
    ...(header.outputs !== undefined && { outputs: header.outputs }),
    ...(header.binaryOutputs !== undefined && { binaryOutputs: header.binaryOutputs }),
    inputs
  }
}

/**
 * What "the same body" means for an idempotency key: the model and version the
 * client named (not the one it resolved to, so a retry after a new version ships
 * still matches), the requested outputs and their encoding, and every input's type,
 * shape and bytes.
 * The v2 `id` is an echo field and does not count.
 */
export function fingerprint (request: InferenceRequest, requestedVersion: string | undefined): string {
  const hash = createHash('sha256')
  hash.update(JSON.stringify([request.model, requestedVersion ?? '', request.outputs ?? null, request.binaryOutputs ?? null]))
  for (const t of request.inputs) {
    hash.update(JSON.stringify([t.name, t.datatype, t.shape]))
    hash.update(bytesOf(t.data))
  }
  return hash.digest('base64url')
}
