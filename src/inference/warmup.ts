import { readFile } from 'node:fs/promises'
import { ConfigError } from '../config-error.js'
import { decodeRequestBody } from '../http/v2-json.js'
import { allocate, bytesPerElement, isV2Datatype } from './datatypes.js'
import type { WarmupInputs, WarmupSetting } from './model-repository.js'
import type { ModelSignature, Tensor } from './signature.js'
import type { ModelLimits } from './validate.js'
import { isJsonObject } from '../json.js'

// The warm-up run's inputs. A warm-up spec is a v2 request's `inputs`, decoded and
// checked exactly as a request is, so a spec that does not fit the model fails the
// load with the same precise message a client would get, naming the spec's file.

/** Zero-filled data of this many bytes at most stands in for `"zero_data": true`. */
const MAX_ZERO_BYTES = 2 ** 30

/** The tensors to warm each instance up with, or undefined when warm-up is off. */
export async function warmupInputs (setting: WarmupSetting, signature: ModelSignature, limits: ModelLimits): Promise<Tensor[] | undefined> {
  if (setting === false) return undefined
  if (setting === true) return zeroInputs(signature)
  const spec = 'inputsFile' in setting ? await readWarmupFile(setting.inputsFile) : setting
  return decodeWarmup(spec, signature, limits)
}

/** Every input zero-filled (empty strings for BYTES), each dynamic dimension 1. */
function zeroInputs (signature: ModelSignature): Tensor[] {
  return signature.inputs.map((spec) => {
    const shape = spec.shape.map((d) => (d === -1 ? 1 : d))
    return { name: spec.name, datatype: spec.datatype, shape, data: allocate(spec.datatype, shape.reduce((a, b) => a * b, 1)) }
  })
}

async function readWarmupFile (path: string): Promise<WarmupInputs> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new ConfigError(`MODEL_REPOSITORY: cannot read warm-up inputs ${path}: ${(error as Error).message}`)
  }
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (error) {
    throw new ConfigError(`MODEL_REPOSITORY: ${path} is not valid JSON: ${(error as Error).message}`)
  }
  const inputs = typeof body === 'object' && body !== null ? (body as { inputs?: unknown }).inputs : undefined
  if (!Array.isArray(inputs)) throw new ConfigError(`MODEL_REPOSITORY: ${path}: must be a JSON object {"inputs": [v2 tensors]}`)
  return { inputs, source: path }
}

function decodeWarmup ({ inputs, source }: WarmupInputs, signature: ModelSignature, limits: ModelLimits): Tensor[] {
  const fail = (what: string): never => { throw new ConfigError(`MODEL_REPOSITORY: ${source}: warm-up inputs: ${what}`) }
  // `"zero_data": true` (Triton's name) becomes binary data of zeros, so one decoder checks everything.
  const zeros: number[] = []
  const tensors = inputs.map((raw, index) => {
    if (!isJsonObject(raw)) return raw
    const tensor = raw
    if (tensor.parameters !== undefined) fail(`inputs[${index}] may give data or "zero_data": true, not parameters`)
    if (tensor.zero_data === undefined) return tensor
    if (tensor.zero_data !== true || tensor.data !== undefined) fail(`inputs[${index}]: zero_data must be true, and stands instead of data`)
    const rest = Object.fromEntries(Object.entries(tensor).filter(([key]) => key !== 'zero_data'))
    const size = zeroDataSize(tensor.datatype, tensor.shape)
    if (size > MAX_ZERO_BYTES) fail(`inputs[${index}]: zero_data of ${size} bytes is more than a warm-up needs (at most ${MAX_ZERO_BYTES})`)
    zeros.push(size)
    return { ...rest, parameters: { binary_data_size: size } }
  })
  const total = zeros.reduce((a, b) => a + b, 0)
  try {
    return [...decodeRequestBody({ inputs: tensors }, signature, limits, zeros.length > 0 ? Buffer.alloc(total) : undefined).inputs]
  } catch (error) {
    if (error instanceof ConfigError) throw error
    return fail((error as Error).message)
  }
}

/** Bytes of zeros for a tensor of this datatype and shape; 0 when either is malformed (the decoder then says what is wrong). */
function zeroDataSize (datatype: unknown, shape: unknown): number {
  if (!isV2Datatype(datatype) || !Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return 0
  const elements = (shape as number[]).reduce((a, b) => a * b, 1)
  // An empty string is a zero length and no bytes.
  return elements * (datatype === 'BYTES' ? 4 : bytesPerElement(datatype))
}
