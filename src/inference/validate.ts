import { InvalidRequest } from '../errors.js'
import { truncate } from '../text.js'
import { isV2Datatype, type V2Datatype } from './datatypes.js'
import type { TensorSpec } from './signature.js'

const MAX_RANK = 16
const MAX_DIMENSION = 2 ** 31 - 1

export interface ModelLimits {
  /** 0 when the model cannot be batched; otherwise the largest first dimension one request may send. */
  readonly maxBatchSize: number
}

/**
 * Checks an input's datatype and shape against the model's declaration and returns
 * its element count. `available` is how many elements the request actually carries,
 * so an absurd shape is refused before anything is allocated for it.
 */
export function validateInputHeader (
  spec: TensorSpec,
  datatype: unknown,
  shape: unknown,
  limits: ModelLimits
): { datatype: V2Datatype, shape: number[], elements: number } {
  const where = `input '${spec.name}'`
  if (!isV2Datatype(datatype)) {
    throw new InvalidRequest(`${where}: datatype ${truncate(JSON.stringify(datatype) ?? String(datatype))} is not a supported v2 datatype`)
  }
  if (datatype !== spec.datatype) {
    throw new InvalidRequest(`${where}: datatype ${datatype} does not match the model's ${spec.datatype}`)
  }
  if (!Array.isArray(shape)) throw new InvalidRequest(`${where}: shape must be an array of integers`)
  if (shape.length !== spec.shape.length || shape.length > MAX_RANK) {
    throw new InvalidRequest(`${where}: shape [${truncate(shape.join(','))}] has rank ${shape.length}, the model expects rank ${spec.shape.length} ([${spec.shape.join(',')}])`)
  }
  let elements = 1
  for (let i = 0; i < shape.length; i++) {
    const dim: unknown = shape[i]
    // 0 is valid: ONNX and the v2 protocol both allow empty tensors.
    if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 0 || dim > MAX_DIMENSION) {
      throw new InvalidRequest(`${where}: shape[${i}] must be an integer from 0 to ${MAX_DIMENSION}, got ${truncate(JSON.stringify(dim) ?? String(dim))}`)
    }
    const declared = spec.shape[i]
    if (declared !== -1 && declared !== dim) {
      throw new InvalidRequest(`${where}: shape[${i}] is ${dim}, the model requires ${declared} ([${spec.shape.join(',')}])`)
    }
    elements *= dim
  }
  if (limits.maxBatchSize > 0 && (shape[0] as number) > limits.maxBatchSize) {
    throw new InvalidRequest(`${where}: batch of ${shape[0] as number} rows exceeds the model's max_batch_size ${limits.maxBatchSize}`)
  }
  return { datatype, shape: shape as number[], elements }
}
