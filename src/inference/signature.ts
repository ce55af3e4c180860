import type { TensorData, V2Datatype } from './datatypes.js'

/** A model input or output as the ONNX file declares it; -1 marks a dynamic dimension. */
export interface TensorSpec {
  readonly name: string
  readonly datatype: V2Datatype
  readonly shape: readonly number[]
  /** The symbolic name the file gives a dynamic first dimension ("batch", "N"); "" when unnamed. */
  readonly firstDimName?: string
}

export interface ModelSignature {
  readonly inputs: readonly TensorSpec[]
  readonly outputs: readonly TensorSpec[]
}

export interface Tensor {
  readonly name: string
  readonly datatype: V2Datatype
  readonly shape: readonly number[]
  readonly data: TensorData
}

/** A decoded, validated inference request: what the journal stores and the engine runs. */
export interface InferenceRequest {
  readonly model: string
  readonly version: string
  /** The client's v2 `id`, echoed in the response. */
  readonly clientId?: string
  readonly inputs: readonly Tensor[]
  /** Output names the client asked for; all outputs when absent. */
  readonly outputs?: readonly string[]
  /** Outputs to answer as raw bytes (the v2 binary tensor data extension): true for all. */
  readonly binaryOutputs?: true | readonly string[]
}

export interface InferenceResponse {
  readonly model: string
  readonly version: string
  readonly clientId?: string
  readonly outputs: readonly Tensor[]
}

/**
 * Whether requests can be stacked along the first dimension: every input and output has
 * a dynamic one, and the inputs' are one dimension (the same symbolic name), since
 * ReduceSum's `data [a, b, c]` and `axes [k]` are both dynamic but are no batch. Outputs
 * often carry names of their own (converters number them), so whether their first
 * dimension follows the batch is checked on each merged run instead.
 */
export function isBatchable (signature: ModelSignature): boolean {
  // Without inputs there are no rows to stack: every run of such a model is the same.
  if (signature.inputs.length === 0) return false
  if (![...signature.inputs, ...signature.outputs].every((spec) => spec.shape.length > 0 && spec.shape[0] === -1)) return false
  if (signature.inputs.length === 1) return true
  const name = signature.inputs[0].firstDimName ?? ''
  return name !== '' && signature.inputs.every((spec) => spec.firstDimName === name)
}

export function elementCount (shape: readonly number[]): number {
  let count = 1
  for (const dim of shape) count *= dim
  return count
}
