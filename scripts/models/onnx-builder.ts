// Small helpers for assembling ONNX models with onnx-proto.
// Every helper is pure, so the same arguments always encode to the same bytes.
import onnxProto from 'onnx-proto'
import type { onnx as Onnx } from 'onnx-proto'

const { onnx } = onnxProto

export type ModelProto = Onnx.ModelProto
export type GraphProto = Onnx.IGraphProto
export type NodeProto = Onnx.INodeProto
export type TensorProto = Onnx.ITensorProto
export type ValueInfoProto = Onnx.IValueInfoProto
export type AttributeProto = Onnx.IAttributeProto

export const DataType = onnx.TensorProto.DataType
export type DataType = Onnx.TensorProto.DataType

export const IR_VERSION = 8
export const DEFAULT_OPSET = 17
export const PRODUCER_NAME = 'spotgate'

/** A fixed size, or a named dimension whose size is chosen per request (e.g. "batch"). */
export type Dim = number | string

export function valueInfo (name: string, elemType: DataType, dims: readonly Dim[]): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: {
          dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })),
        },
      },
    },
  }
}

/** Scalars are tensors of shape []; Loop bodies need them for the iteration count and condition. */
export function scalarInfo (name: string, elemType: DataType): ValueInfoProto {
  return valueInfo(name, elemType, [])
}

type RawArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | BigInt64Array

function littleEndianBytes (data: RawArray): Uint8Array {
  // raw_data is little-endian by spec; Node runs on little-endian hosts, so the
  // typed array's own bytes are already in the right order.
  return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength))
}

function elementCount (dims: readonly number[]): number {
  return dims.reduce((n, d) => n * d, 1)
}

/** Raw tensor; for FLOAT16 pass the half-precision bit patterns as a Uint16Array, for BOOL a Uint8Array of 0/1. */
export function tensor (name: string, dataType: DataType, dims: readonly number[], data: RawArray): TensorProto {
  if (data.length !== elementCount(dims)) {
    throw new Error(`tensor ${name}: ${data.length} values do not fill shape [${dims.join(', ')}]`)
  }
  return { name, dataType, dims: [...dims], rawData: littleEndianBytes(data) }
}

export function floatTensor (name: string, dims: readonly number[], values: ArrayLike<number>): TensorProto {
  return tensor(name, DataType.FLOAT, dims, Float32Array.from(values))
}

export function int64Tensor (name: string, dims: readonly number[], values: ArrayLike<number | bigint>): TensorProto {
  return tensor(name, DataType.INT64, dims, BigInt64Array.from(Array.from(values, (v) => BigInt(v))))
}

/** A tensor of strings, stored as UTF-8 bytes per element. */
export function stringTensor (name: string, dims: readonly number[], values: readonly string[]): TensorProto {
  if (values.length !== elementCount(dims)) {
    throw new Error(`tensor ${name}: ${values.length} values do not fill shape [${dims.join(', ')}]`)
  }
  const encoder = new TextEncoder()
  return { name, dataType: DataType.STRING, dims: [...dims], stringData: values.map((v) => encoder.encode(v)) }
}

/** Attribute constructors; ONNX needs the kind spelled out (1 as an int is not 1.0 as a float). */
export const attr = {
  int (name: string, i: number): AttributeProto {
    return { name, type: onnx.AttributeProto.AttributeType.INT, i }
  },
  ints (name: string, ints: readonly number[]): AttributeProto {
    return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: [...ints] }
  },
  float (name: string, f: number): AttributeProto {
    return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f }
  },
  string (name: string, s: string): AttributeProto {
    return { name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(s) }
  },
  tensor (name: string, t: TensorProto): AttributeProto {
    return { name, type: onnx.AttributeProto.AttributeType.TENSOR, t }
  },
  graph (name: string, g: GraphProto): AttributeProto {
    return { name, type: onnx.AttributeProto.AttributeType.GRAPH, g }
  },
}

/** An empty input name ("") marks an omitted optional input. */
export function node (
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  attributes: readonly AttributeProto[] = [],
  name = `${opType}_${outputs[0] ?? ''}`
): NodeProto {
  return { opType, name, input: [...inputs], output: [...outputs], attribute: [...attributes] }
}

export interface GraphSpec {
  name: string;
  inputs: readonly ValueInfoProto[];
  outputs: readonly ValueInfoProto[];
  nodes: readonly NodeProto[];
  initializers?: readonly TensorProto[];
  docString?: string;
}

export function graph (spec: GraphSpec): GraphProto {
  return {
    name: spec.name,
    input: [...spec.inputs],
    output: [...spec.outputs],
    node: [...spec.nodes],
    initializer: [...(spec.initializers ?? [])],
    docString: spec.docString ?? '',
  }
}

export interface ModelOptions {
  opset?: number;
  docString?: string;
  modelVersion?: number;
}

export function model (g: GraphProto, options: ModelOptions = {}): ModelProto {
  return onnx.ModelProto.create({
    irVersion: IR_VERSION,
    producerName: PRODUCER_NAME,
    opsetImport: [{ domain: '', version: options.opset ?? DEFAULT_OPSET }],
    modelVersion: options.modelVersion ?? 0,
    docString: options.docString ?? '',
    graph: g,
  })
}

export function encodeModel (m: ModelProto): Uint8Array {
  const message = onnx.ModelProto.verify(m)
  if (message) throw new Error(`invalid ModelProto: ${message}`)
  return onnx.ModelProto.encode(m).finish()
}

/** mulberry32: a tiny seeded PRNG, so weights are reproducible across runs and machines. */
export function mulberry32 (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `count` values drawn uniformly from [-scale, scale). */
export function uniformFloats (count: number, seed: number, scale: number): Float32Array {
  const next = mulberry32(seed)
  const out = new Float32Array(count)
  for (let i = 0; i < count; i++) out[i] = (next() * 2 - 1) * scale
  return out
}
