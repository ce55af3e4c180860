import { InvalidRequest } from '../errors.js'
import { tensorBytes } from '../inference/datatypes.js'
import type { InferenceResponse } from '../inference/signature.js'
import type { StoredResponse } from '../journal/journal.js'
import { parseJsonBytes } from './json-body.js'
import { encodeResponseJson } from './v2-response.js'

// The KServe v2 binary tensor data extension: a JSON header of
// `Inference-Header-Content-Length` bytes, then the raw tensor bytes of every
// tensor whose parameters carry `binary_data_size`, in order.

export const HEADER_LENGTH = 'inference-header-content-length'
const BINARY_TYPE = 'application/octet-stream'

/** A binary request, split into its (parsed) JSON header and its data section. */
export class BinaryBody {
  constructor (readonly header: unknown, readonly data: Buffer) {}
}

/** Splits a binary request; `parseJson` is the server's safe JSON parser. */
export function splitBinaryBody (raw: Buffer, headerLength: string | string[]): BinaryBody {
  const value = Array.isArray(headerLength) ? undefined : headerLength.trim()
  if (value === undefined || !/^\d{1,10}$/.test(value)) throw new InvalidRequest('Inference-Header-Content-Length must be one whole number of bytes')
  const length = Number(value)
  if (length === 0 || length > raw.length) {
    throw new InvalidRequest(`Inference-Header-Content-Length is ${length}, but the body has ${raw.length} bytes`)
  }
  const header = parseJsonBytes(raw, `the ${length}-byte JSON header of the binary request`, 0, length)
  return new BinaryBody(header, raw.subarray(length))
}

/** A binary answer: the outputs named (or all) as raw bytes after the JSON header. */
export function encodeBinaryResponse (response: InferenceResponse, binaryOutputs: true | readonly string[]): StoredResponse {
  const header = encodeResponseJson(response, binaryOutputs)
  const chunks = response.outputs
    .filter((t) => binaryOutputs === true || binaryOutputs.includes(t.name))
    .map((t) => tensorBytes(t.datatype, t.data))
  return { statusCode: 200, contentType: BINARY_TYPE, body: Buffer.concat([header, ...chunks]), headerLength: header.length }
}
