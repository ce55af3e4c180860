import { InvalidRequest } from '../errors.js'
import { truncate } from '../text.js'
import { allocate, bytesPerElement, viewOf, type TensorData, type V2Datatype } from '../inference/datatypes.js'
import { fromHalfBits, toHalfBits } from '../inference/float16.js'
import type { InferenceResponse, ModelSignature, Tensor, TensorSpec } from '../inference/signature.js'
import { validateInputHeader, type ModelLimits } from '../inference/validate.js'

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
const INT64_RANGE = [-(2n ** 63n), 2n ** 63n - 1n] as const
const UINT64_RANGE = [0n, 2n ** 64n - 1n] as const

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Decodes a v2 request. `binaryData` is the section after the JSON header of a
 * binary request (Inference-Header-Content-Length), read in input order.
 */
export function decodeRequestBody (body: unknown, signature: ModelSignature, limits: ModelLimits, binaryData?: Buffer): DecodedBody {
  if (!isObject(body)) throw new InvalidRequest('request body must be a JSON object')
  const { id, inputs, outputs, parameters } = body as V2RequestBody
  const binary = binaryData === undefined ? undefined : new BinarySection(binaryData)
  if (id !== undefined && typeof id !== 'string') throw new InvalidRequest('id must be a string')
  if (!Array.isArray(inputs) || inputs.length === 0) throw new InvalidRequest('inputs must be a non-empty array of tensors')

  const byName = new Map<string, Tensor>()
  for (const [index, raw] of inputs.entries()) {
    if (!isObject(raw)) throw new InvalidRequest(`inputs[${index}] must be an object with name, datatype, shape and data`)
    const name = raw.name
    if (typeof name !== 'string') throw new InvalidRequest(`inputs[${index}].name must be a string`)
    const spec = signature.inputs.find((s) => s.name === name)
    if (spec === undefined) {
      throw new InvalidRequest(`input '${truncate(name)}' is not an input of this model (inputs: ${signature.inputs.map((s) => s.name).join(', ')})`)
    }
    if (byName.has(name)) throw new InvalidRequest(`input '${name}' is given more than once`)
    byName.set(name, decodeTensor(spec, raw, limits, binary))
  }
  binary?.finish()
  const missing = signature.inputs.filter((s) => !byName.has(s.name))
  if (missing.length > 0) throw new InvalidRequest(`missing input ${missing.map((s) => `'${s.name}'`).join(', ')}`)
  checkBatchAgreement(signature, byName, limits)

  const requested = outputs === undefined ? undefined : decodeRequestedOutputs(outputs, signature)
  const binaryOutputs = isObject(parameters) && parameters.binary_data_output === true ? true as const : requested?.binary
  return {
    ...(id !== undefined && { clientId: id }),
    inputs: signature.inputs.map((s) => byName.get(s.name) as Tensor),
    ...(requested !== undefined && { outputs: requested.names }),
    ...(binaryOutputs !== undefined && (binaryOutputs === true || binaryOutputs.length > 0) && { binaryOutputs })
  }
}

function decodeTensor (spec: TensorSpec, raw: Record<string, unknown>, limits: ModelLimits, binary: BinarySection | undefined): Tensor {
  const { datatype, shape, elements } = validateInputHeader(spec, raw.datatype, raw.shape, limits)
  const size = isObject(raw.parameters) ? raw.parameters.binary_data_size : undefined
  if (size !== undefined) {
    if (binary === undefined) throw new InvalidRequest(`input '${spec.name}': binary_data_size needs a binary request (Inference-Header-Content-Length)`)
    if (raw.data !== undefined) throw new InvalidRequest(`input '${spec.name}': give either data or binary_data_size, not both`)
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) {
      throw new InvalidRequest(`input '${spec.name}': binary_data_size must be a whole number of bytes, got ${truncate(JSON.stringify(size) ?? String(size))}`)
    }
    const expected = elements * bytesPerElement(datatype)
    if (size !== expected) throw new InvalidRequest(`input '${spec.name}': binary_data_size is ${truncate(String(size))}, shape [${shape.join(',')}] of ${datatype} needs ${expected} bytes`)
    const data = viewOf(datatype, binary.take(spec.name, expected))
    if (datatype === 'BOOL' && (data as Uint8Array).some((v) => v > 1)) throw new InvalidRequest(`input '${spec.name}': BOOL bytes must be 0 or 1`)
    return { name: spec.name, datatype, shape, data }
  }
  const values = raw.data
  if (!Array.isArray(values)) throw new InvalidRequest(`input '${spec.name}': data must be a flat array of ${elements} values`)
  if (values.length !== elements) {
    throw new InvalidRequest(`input '${spec.name}': data has ${values.length} values, shape [${shape.join(',')}] needs ${elements}`)
  }
  return { name: spec.name, datatype, shape, data: decodeValues(spec.name, datatype, values) }
}

function decodeValues (name: string, datatype: V2Datatype, values: unknown[]): TensorData {
  const out = allocate(datatype, values.length)
  const bad = (i: number, what: string): never => {
    const shown = Array.isArray(values[i]) ? 'a nested array (data must be flat, row-major)' : truncate(JSON.stringify(values[i]) ?? String(values[i]))
    throw new InvalidRequest(`input '${name}': data[${i}] is ${shown}, expected ${what}`)
  }
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
        const v = values[i]
        if (typeof v !== 'number') bad(i, `a number (${datatype})`)
        if (Math.abs(v as number) > max) bad(i, `a number within the range of ${datatype}`)
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
  if (limits.maxBatchSize === 0) return
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
    const name = isObject(raw) ? raw.name : undefined
    if (typeof name !== 'string') throw new InvalidRequest(`outputs[${index}].name must be a string`)
    if (!signature.outputs.some((s) => s.name === name)) {
      throw new InvalidRequest(`output '${truncate(name)}' is not an output of this model (outputs: ${signature.outputs.map((s) => s.name).join(', ')})`)
    }
    if (!names.includes(name)) names.push(name)
    if (isObject(raw) && isObject(raw.parameters) && raw.parameters.binary_data === true && !binary.includes(name)) binary.push(name)
  }
  return { names, binary }
}

export interface V2ResponseTensor {
  name: string
  datatype: V2Datatype
  shape: number[]
  data?: Array<number | boolean | string>
  /** Set instead of `data` for an output sent as raw bytes after the JSON header. */
  parameters?: { binary_data_size: number }
}

export interface V2ResponseBody {
  id?: string
  model_name: string
  model_version: string
  outputs: V2ResponseTensor[]
}

/** The v2 JSON answer; outputs named in `binary` (or all, for true) carry their size instead of their values. */
export function encodeResponseBody (response: InferenceResponse, binary?: true | readonly string[]): V2ResponseBody {
  return {
    ...(response.clientId !== undefined && { id: response.clientId }),
    model_name: response.model,
    model_version: response.version,
    outputs: response.outputs.map((t) => {
      const head = { name: t.name, datatype: t.datatype, shape: [...t.shape] }
      if (binary === true || binary?.includes(t.name) === true) return { ...head, parameters: { binary_data_size: t.data.byteLength } }
      return { ...head, data: encodeValues(t) }
    })
  }
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER)
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

function encodeValues (tensor: Tensor): Array<number | boolean | string> {
  const { data, datatype } = tensor
  switch (datatype) {
    case 'BOOL': return Array.from(data as Uint8Array, (v) => v !== 0)
    case 'FP16': return Array.from(data as Uint16Array, fromHalfBits)
    // JSON numbers are doubles: past 2^53 a value goes out as a decimal string, as it may come in.
    case 'INT64':
    case 'UINT64': return Array.from(data as BigInt64Array, (v) => (v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : String(v)))
    default: return Array.from(data as Float32Array)
  }
}
