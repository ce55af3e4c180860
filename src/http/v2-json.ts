import { InvalidRequest } from '../errors.js'
import { truncate } from '../text.js'
import { decodeBytesElements, unservableString } from '../inference/bytes-elements.js'
import { allocate, bytesPerElement, viewOf, type NumericData, type TensorData, type V2Datatype } from '../inference/datatypes.js'
import { toHalfBits } from '../inference/float16.js'
import type { ModelSignature, Tensor, TensorSpec } from '../inference/signature.js'
import { validateInputHeader, type ModelLimits } from '../inference/validate.js'
import { isJsonObject } from '../json.js'

// The KServe v2 JSON form, decoded once here into typed tensors; nothing past
// this module sees JSON.

export interface V2RequestBody {
  readonly id?: unknown
  readonly inputs?: unknown
  readonly outputs?: unknown
  readonly parameters?: unknown
}

export interface DecodedBody {
  readonly clientId?: string
  readonly inputs: Tensor[]
  readonly outputs?: string[]
  /** Outputs the client wants as raw bytes (binary tensor data extension): true for all. */
  readonly binaryOutputs?: true | string[]
}

/** Reads consecutive slices of a binary request's data section. */
class BinarySection {
  private offset = 0
  constructor (readonly bytes: Buffer) {}

  take (name: string, size: number): Buffer {
    if (this.offset + size > this.bytes.length) {
      throw new InvalidRequest(`input '${name}': binary_data_size ${size} runs past the end of the body (${this.bytes.length - this.offset} bytes left)`)
    }
    const slice = this.bytes.subarray(this.offset, this.offset + size)
    this.offset += size
    return slice
  }

  finish (): void {
    if (this.offset !== this.bytes.length) {
      throw new InvalidRequest(`binary data section has ${this.bytes.length} bytes but the inputs' binary_data_size add up to ${this.offset}`)
    }
  }
}

const INTEGER_RANGE: Partial<Record<V2Datatype, readonly [number, number]>> = {
  UINT8: [0, 0xff],
  UINT16: [0, 0xffff],
  UINT32: [0, 0xffffffff],
  INT8: [-0x80, 0x7f],
  INT16: [-0x8000, 0x7fff],
  INT32: [-0x80000000, 0x7fffffff]
}
const FLOAT_MAX: Partial<Record<V2Datatype, number>> = { FP16: 65504, FP32: 3.4028234663852886e38, FP64: Number.MAX_VALUE }
const NON_FINITE = new Map<unknown, number>([['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]])
const INT64_RANGE = [-(2n ** 63n), 2n ** 63n - 1n] as const
const UINT64_RANGE = [0n, 2n ** 64n - 1n] as const

/**
 * Decodes a v2 request. `binaryData` is the section after the JSON header of a
 * binary request (Inference-Header-Content-Length), read in input order.
 */
export function decodeRequestBody (body: unknown, signature: ModelSignature, limits: ModelLimits, binaryData?: Buffer): DecodedBody {
  if (!isJsonObject(body)) throw new InvalidRequest('request body must be a JSON object')
  const { id, inputs, outputs, parameters } = body as V2RequestBody
  const binary = binaryData === undefined ? undefined : new BinarySection(binaryData)
  if (id !== undefined && typeof id !== 'string') throw new InvalidRequest('id must be a string')
  // A model without inputs (constants only) runs on `inputs: []` or none at all.
  if (inputs !== undefined && !Array.isArray(inputs)) throw new InvalidRequest('inputs must be an array of tensors')

  const byName = new Map<string, Tensor>()
  for (const [index, raw] of (inputs ?? []).entries()) {
    if (!isJsonObject(raw)) throw new InvalidRequest(`inputs[${index}] must be an object with name, datatype, shape and data`)
    const name = raw.name
    if (typeof name !== 'string') throw new InvalidRequest(`inputs[${index}].name must be a string`)
    const spec = signature.inputs.find((s) => s.name === name)
    if (spec === undefined) {
      const known = signature.inputs.length === 0 ? 'it has no inputs' : `inputs: ${signature.inputs.map((s) => s.name).join(', ')}`
      throw new InvalidRequest(`input '${truncate(name)}' is not an input of this model (${known})`)
    }
    if (byName.has(name)) throw new InvalidRequest(`input '${name}' is given more than once`)
    byName.set(name, decodeTensor(spec, raw, limits, binary))
  }
  binary?.finish()
  const missing = signature.inputs.filter((s) => !byName.has(s.name))
  if (missing.length > 0) throw new InvalidRequest(`missing input ${missing.map((s) => `'${s.name}'`).join(', ')}`)
  checkBatchAgreement(signature, byName, limits)

  const requested = outputs === undefined ? undefined : decodeRequestedOutputs(outputs, signature)
  if (isJsonObject(parameters) && parameters.binary_data_output !== undefined && typeof parameters.binary_data_output !== 'boolean') {
    throw new InvalidRequest(`parameters.binary_data_output must be true or false, not ${JSON.stringify(parameters.binary_data_output).slice(0, 50)}`)
  }
  const binaryOutputs = isJsonObject(parameters) && parameters.binary_data_output === true ? true as const : requested?.binary
  return {
    ...(id !== undefined && { clientId: id }),
    inputs: signature.inputs.map((s) => byName.get(s.name) as Tensor),
    ...(requested !== undefined && { outputs: requested.names }),
    ...(binaryOutputs !== undefined && (binaryOutputs === true || binaryOutputs.length > 0) && { binaryOutputs })
  }
}

function decodeTensor (spec: TensorSpec, raw: Record<string, unknown>, limits: ModelLimits, binary: BinarySection | undefined): Tensor {
  const { datatype, shape, elements } = validateInputHeader(spec, raw.datatype, raw.shape, limits)
  const size = isJsonObject(raw.parameters) ? raw.parameters.binary_data_size : undefined
  if (size !== undefined) {
    if (binary === undefined) throw new InvalidRequest(`input '${spec.name}': binary_data_size needs a binary request (Inference-Header-Content-Length)`)
    if (raw.data !== undefined) throw new InvalidRequest(`input '${spec.name}': give either data or binary_data_size, not both`)
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) {
      throw new InvalidRequest(`input '${spec.name}': binary_data_size must be a whole number of bytes, got ${truncate(JSON.stringify(size) ?? String(size))}`)
    }
    if (datatype === 'BYTES') return { name: spec.name, datatype, shape, data: decodeBinaryStrings(spec.name, shape, elements, binary.take(spec.name, size)) }
    const expected = elements * bytesPerElement(datatype)
    if (size !== expected) throw new InvalidRequest(`input '${spec.name}': binary_data_size is ${truncate(String(size))}, shape [${shape.join(',')}] of ${datatype} needs ${expected} bytes`)
    const data = viewOf(datatype, binary.take(spec.name, expected))
    if (datatype === 'BOOL' && (data as Uint8Array).some((v) => v > 1)) throw new InvalidRequest(`input '${spec.name}': BOOL bytes must be 0 or 1`)
    return { name: spec.name, datatype, shape, data }
  }
  const values = raw.data
  if (!Array.isArray(values)) throw new InvalidRequest(`input '${spec.name}': data must be a flat array of ${elements} values`)
  if (values.length !== elements) {
    const nested = values.length > 0 && Array.isArray(values[0]) ? ' (data must be flat, in row-major order: it is an array of arrays)' : ''
    throw new InvalidRequest(`input '${spec.name}': data has ${values.length} values, shape [${shape.join(',')}] needs ${elements}${nested}`)
  }
  return { name: spec.name, datatype, shape, data: decodeValues(spec.name, datatype, values) }
}

/** A BYTES input sent as bytes: per element a 4-byte little-endian length, then the bytes. */
function decodeBinaryStrings (name: string, shape: readonly number[], elements: number, bytes: Uint8Array): string[] {
  try {
    return decodeBytesElements(bytes, elements)
  } catch (error) {
    throw new InvalidRequest(`input '${name}': BYTES data of shape [${shape.join(',')}]: ${(error as Error).message}`)
  }
}

function decodeValues (name: string, datatype: V2Datatype, values: unknown[]): TensorData {
  const bad = (i: number, what: string): never => {
    const shown = Array.isArray(values[i]) ? 'a nested array (data must be flat, row-major)' : truncate(JSON.stringify(values[i]) ?? String(values[i]))
    throw new InvalidRequest(`input '${name}': data[${i}] is ${shown}, expected ${what}`)
  }
  if (datatype === 'BYTES') {
    for (let i = 0; i < values.length; i++) {
      const v = values[i]
      if (typeof v !== 'string') bad(i, 'a string (BYTES)')
      const problem = unservableString(v as string)
      if (problem !== undefined) throw new InvalidRequest(`input '${name}': data[${i}] ${problem}`)
    }
    return values as string[]
  }
  const out = allocate(datatype, values.length) as NumericData
  switch (datatype) {
    case 'BOOL': {
      for (let i = 0; i < values.length; i++) {
        const v = values[i]
        if (typeof v !== 'boolean') bad(i, 'true or false')
        out[i] = v ? 1 : 0
      }
      return out
    }
    case 'FP16':
    case 'FP32':
    case 'FP64': {
      const max = FLOAT_MAX[datatype] as number
      const half = datatype === 'FP16'
      for (let i = 0; i < values.length; i++) {
        let v = values[i]
        if (typeof v === 'string') {
          // JSON has no literal for them, so non-finite values travel as these three strings.
          v = NON_FINITE.get(v)
          if (v === undefined) bad(i, `a number (${datatype}), or "NaN", "Infinity" or "-Infinity"`)
        } else if (typeof v !== 'number') {
          bad(i, `a number (${datatype})`)
        } else if (Math.abs(v) > max) {
          bad(i, `a number within the range of ${datatype}`)
        }
        out[i] = half ? toHalfBits(v as number) : (v as number)
      }
      return out
    }
    case 'INT64':
    case 'UINT64': {
      const [min, max] = datatype === 'INT64' ? INT64_RANGE : UINT64_RANGE
      for (let i = 0; i < values.length; i++) {
        const v = values[i]
        let big: bigint | undefined
        if (typeof v === 'number' && Number.isSafeInteger(v)) big = BigInt(v)
        else if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) big = BigInt(v)
        // A JSON number past 2^53 has already lost digits when it is parsed: only a string keeps them.
        if (typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v)) bad(i, `an integer of at most 2^53 as a JSON number; send larger ${datatype} values as decimal strings`)
        if (big === undefined || big < min || big > max) bad(i, `an integer within the range of ${datatype}`)
        out[i] = big as bigint
      }
      return out
    }
    default: {
      const [min, max] = INTEGER_RANGE[datatype] as readonly [number, number]
      for (let i = 0; i < values.length; i++) {
        const v = values[i]
        if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(i, `an integer within the range of ${datatype} [${min}, ${max}]`)
        out[i] = v as number
      }
      return out
    }
  }
}

function checkBatchAgreement (signature: ModelSignature, inputs: Map<string, Tensor>, limits: ModelLimits): void {
  if (limits.maxBatchSize === 0 || signature.inputs.length === 0) return
  const [first, ...rest] = signature.inputs.map((s) => inputs.get(s.name) as Tensor)
  for (const tensor of rest) {
    if (tensor.shape[0] !== first.shape[0]) {
      throw new InvalidRequest(`input '${tensor.name}' has ${tensor.shape[0]} rows but input '${first.name}' has ${first.shape[0]}; every input needs the same first dimension`)
    }
  }
}

function decodeRequestedOutputs (outputs: unknown, signature: ModelSignature): { names: string[], binary: string[] } {
  if (!Array.isArray(outputs)) throw new InvalidRequest('outputs must be an array of {"name": ...} objects')
  const names: string[] = []
  const binary: string[] = []
  for (const [index, raw] of outputs.entries()) {
    const name = isJsonObject(raw) ? raw.name : undefined
    if (typeof name !== 'string') throw new InvalidRequest(`outputs[${index}].name must be a string`)
    if (!signature.outputs.some((s) => s.name === name)) {
      throw new InvalidRequest(`output '${truncate(name)}' is not an output of this model (outputs: ${signature.outputs.map((s) => s.name).join(', ')})`)
    }
    if (!names.includes(name)) names.push(name)
    if (isJsonObject(raw) && isJsonObject(raw.parameters) && raw.parameters.binary_data === true && !binary.includes(name)) binary.push(name)
  }
  return { names, binary }
}
