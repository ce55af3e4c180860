import { bytesElementsLength } from '../inference/bytes-elements.js'
import type { NumericData } from '../inference/datatypes.js'
import type { InferenceResponse, Tensor } from '../inference/signature.js'
import { MAX_FLOAT_TEXT_BYTES, writeFloat16, writeFloat32, writeFloat64 } from './float-text.js'

// The v2 JSON answer, written as bytes in one pass into one buffer: the answer is sent
// and journaled as bytes, and its numbers are most of it (float-text.ts). Keys come in
// the order KServe lists them: id, model_name, model_version, outputs.

/** Most bytes one element of each datatype takes as JSON text, with its comma. */
const MAX_ELEMENT_BYTES: Record<Exclude<Tensor['datatype'], 'BYTES'>, number> = {
  BOOL: 6,
  UINT8: 4,
  INT8: 5,
  UINT16: 6,
  INT16: 7,
  UINT32: 11,
  INT32: 12,
  // Past 2^53 a 64-bit integer is a quoted decimal string: up to 20 digits, a sign and quotes.
  UINT64: 23,
  INT64: 23,
  FP16: MAX_FLOAT_TEXT_BYTES + 1,
  FP32: MAX_FLOAT_TEXT_BYTES + 1,
  FP64: 26
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER)
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)
const TRUE = Buffer.from('true')
const FALSE = Buffer.from('false')

function isBinary (name: string, binary: true | readonly string[] | undefined): boolean {
  return binary === true || (binary !== undefined && binary.includes(name))
}

/** The byte length of a binary output's data section. */
export function binaryDataSize (tensor: Tensor): number {
  return tensor.datatype === 'BYTES' ? bytesElementsLength(tensor.data as string[]) : (tensor.data as NumericData).byteLength
}

/**
 * The v2 JSON answer as bytes. Outputs named in `binary` (or all, for true) carry
 * `parameters.binary_data_size` instead of `data`: their bytes follow the JSON header
 * in a binary answer.
 */
export function encodeResponseJson (response: InferenceResponse, binary?: true | readonly string[]): Buffer {
  const head = `{${response.clientId !== undefined ? `"id":${JSON.stringify(response.clientId)},` : ''}"model_name":${JSON.stringify(response.model)},"model_version":${JSON.stringify(response.version)},"outputs":[`
  const tensorHeads: string[] = []
  const textData: Array<string | undefined> = []
  let size = Buffer.byteLength(head) + 2
  for (const tensor of response.outputs) {
    let text = `{"name":${JSON.stringify(tensor.name)},"datatype":"${tensor.datatype}","shape":[${tensor.shape.join(',')}],`
    let data: string | undefined
    if (isBinary(tensor.name, binary)) {
      text += `"parameters":{"binary_data_size":${binaryDataSize(tensor)}}}`
    } else {
      text += '"data":['
      if (tensor.datatype === 'BYTES') {
        data = (tensor.data as string[]).map((value) => JSON.stringify(value)).join(',')
        size += Buffer.byteLength(data)
      } else {
        size += tensor.data.length * MAX_ELEMENT_BYTES[tensor.datatype]
      }
      size += 2
    }
    tensorHeads.push(text)
    textData.push(data)
    size += Buffer.byteLength(text) + 1
  }
  const out = Buffer.allocUnsafe(size)
  let at = out.write(head, 0, 'utf8')
  response.outputs.forEach((tensor, index) => {
    if (index > 0) out[at++] = 44
    at += out.write(tensorHeads[index], at, 'utf8')
    if (isBinary(tensor.name, binary)) return
    const text = textData[index]
    at = text !== undefined ? at + out.write(text, at, 'utf8') : writeValues(out, at, tensor)
    out[at++] = 93 // ']'
    out[at++] = 125 // '}'
  })
  out[at++] = 93
  out[at++] = 125
  return out.subarray(0, at)
}

function writeValues (out: Buffer, at: number, tensor: Tensor): number {
  const data = tensor.data as NumericData
  const count = data.length
  switch (tensor.datatype) {
    case 'FP32':
      for (let i = 0; i < count; i++) {
        if (i > 0) out[at++] = 44
        at = writeFloat32(out, at, data[i] as number)
      }
      return at
    case 'FP16':
      for (let i = 0; i < count; i++) {
        if (i > 0) out[at++] = 44
        at = writeFloat16(out, at, data[i] as number)
      }
      return at
    case 'FP64':
      for (let i = 0; i < count; i++) {
        if (i > 0) out[at++] = 44
        at = writeFloat64(out, at, data[i] as number)
      }
      return at
    case 'BOOL':
      for (let i = 0; i < count; i++) {
        if (i > 0) out[at++] = 44
        const word = data[i] !== 0 ? TRUE : FALSE
        word.copy(out, at)
        at += word.length
      }
      return at
    case 'INT64':
    case 'UINT64':
      // JSON numbers are doubles: past 2^53 a value goes out as a decimal string, as it may come in.
      for (let i = 0; i < count; i++) {
        if (i > 0) out[at++] = 44
        const value = data[i] as bigint
        at += out.write(value >= MIN_SAFE && value <= MAX_SAFE ? String(value) : `"${value}"`, at, 'latin1')
      }
      return at
    default:
      for (let i = 0; i < count; i++) {
        if (i > 0) out[at++] = 44
        at += out.write(String(data[i]), at, 'latin1')
      }
      return at
  }
}
