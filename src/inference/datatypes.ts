import type { Tensor } from 'onnxruntime-node'
import { decodeBytesElements, encodeBytesElements } from './bytes-elements.js'

/** KServe v2 datatype names spotgate accepts, mapped to onnxruntime's element types. */
export const V2_TO_ORT = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string'
} as const satisfies Record<string, Tensor.Type>

export type V2Datatype = keyof typeof V2_TO_ORT
export type NumericDatatype = Exclude<V2Datatype, 'BYTES'>

const ORT_TO_V2 = new Map<string, V2Datatype>(
  Object.entries(V2_TO_ORT).map(([v2, ort]) => [ort, v2 as V2Datatype])
)

export function isV2Datatype (value: unknown): value is V2Datatype {
  return typeof value === 'string' && Object.hasOwn(V2_TO_ORT, value)
}

export function v2FromOrt (type: string): V2Datatype | undefined {
  return ORT_TO_V2.get(type)
}

export type NumericData =
  | Float32Array | Float64Array | Uint16Array | Int8Array | Uint8Array | Int16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array

/** Elements of a tensor: a typed array, or for BYTES one JS string per element (as onnxruntime-node takes them). */
export type TensorData = NumericData | string[]

type TypedArrayCtor = { new (length: number): NumericData, new (buffer: ArrayBufferLike, byteOffset: number, length: number): NumericData, BYTES_PER_ELEMENT: number }

const ARRAY_OF: Record<NumericDatatype, TypedArrayCtor> = {
  BOOL: Uint8Array,
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  UINT64: BigUint64Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  FP16: Uint16Array, // IEEE 754 half-precision bit patterns, as onnxruntime expects them
  FP32: Float32Array,
  FP64: Float64Array
}

export function bytesPerElement (datatype: NumericDatatype): number {
  return ARRAY_OF[datatype].BYTES_PER_ELEMENT
}

/** `length` zeros (empty strings for BYTES). */
export function allocate (datatype: V2Datatype, length: number): TensorData {
  if (datatype === 'BYTES') return new Array<string>(length).fill('')
  return new ARRAY_OF[datatype](length)
}

/** A view of `bytes` as the datatype's typed array; copies only when the bytes are misaligned. */
export function viewOf (datatype: NumericDatatype, bytes: Uint8Array): NumericData {
  const Ctor = ARRAY_OF[datatype]
  const size = Ctor.BYTES_PER_ELEMENT
  if (bytes.byteOffset % size === 0) return new Ctor(bytes.buffer, bytes.byteOffset, bytes.byteLength / size)
  const copy = new Uint8Array(bytes.byteLength)
  copy.set(bytes)
  return new Ctor(copy.buffer, 0, bytes.byteLength / size)
}

export function bytesOf (data: NumericData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
}

/** A tensor's elements as the binary extension and the journal carry them: raw little-endian values, or length-prefixed BYTES. */
export function tensorBytes (datatype: V2Datatype, data: TensorData): Uint8Array {
  return datatype === 'BYTES' ? encodeBytesElements(data as string[]) : bytesOf(data as NumericData)
}

/** The inverse of `tensorBytes` for a tensor of `count` elements; throws when BYTES data does not hold exactly that many. */
export function tensorFromBytes (datatype: V2Datatype, bytes: Uint8Array, count: number): TensorData {
  return datatype === 'BYTES' ? decodeBytesElements(bytes, count) : viewOf(datatype, bytes)
}
