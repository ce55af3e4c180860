import type { TensorData, V2Datatype } from './datatypes.js'

/** A model input or output as the ONNX file declares it; -1 marks a dynamic dimension. */
export interface TensorSpec {
  readonly name: string
  readonly datatype: V2Datatype
  readonly shape: readonly number[]
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

/** Whether every input and output has a dynamic first dimension, so requests can be stacked. */
export function isBatchable (signature: ModelSignature): boolean {
  const all = [...signature.inputs, ...signature.outputs]
  return all.length > 0 && all.every((spec) => spec.shape.length > 0 && spec.shape[0] === -1)
}

export function elementCount (shape: readonly number[]): number {
  let count = 1
  for (const dim of shape) count *= dim
  return count
}
