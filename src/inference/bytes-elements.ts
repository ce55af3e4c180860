// BYTES tensors as the v2 binary extension lays them out (Triton and KServe alike): per
// element, a 4-byte little-endian length, then that many bytes. The journal keeps them
// in the same form. In memory they are JS strings, which is how onnxruntime-node takes
// and gives string tensors, so only UTF-8 without NUL characters reaches a model
// unchanged: other bytes would be replaced, and a NUL ends the string early.

const LENGTH_BYTES = 4
// ignoreBOM keeps a leading U+FEFF as the element's first character instead of dropping it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** The serialized size of `values`, without serializing them. */
export function bytesElementsLength (values: readonly string[]): number {
  let size = 0
  for (const value of values) size += LENGTH_BYTES + Buffer.byteLength(value, 'utf8')
  return size
}

export function encodeBytesElements (values: readonly string[]): Uint8Array {
  const out = Buffer.allocUnsafe(bytesElementsLength(values))
  let offset = 0
  for (const value of values) {
    const written = out.write(value, offset + LENGTH_BYTES, 'utf8')
    out.writeUInt32LE(written, offset)
    offset += LENGTH_BYTES + written
  }
  return out
}

/** Why a string cannot reach a model unchanged, or undefined when it can. */
export function unservableString (value: string): string | undefined {
  if (value.includes('\0')) return 'contains a NUL character, which ends a string inside onnxruntime'
  // With the u flag a lone surrogate matches and a proper pair does not.
  if (/\p{Cs}/u.test(value)) return 'contains a lone UTF-16 surrogate, which has no UTF-8 form'
  return undefined
}

/**
 * Reads `count` elements that fill `bytes` exactly. Throws an Error whose message says
 * which element is wrong and how (the caller names the tensor).
 */
export function decodeBytesElements (bytes: Uint8Array, count: number): string[] {
  if (count * LENGTH_BYTES > bytes.length) {
    throw new Error(`${bytes.length} bytes cannot hold ${count} BYTES elements (each starts with a ${LENGTH_BYTES}-byte length)`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const values = new Array<string>(count)
  let offset = 0
  for (let i = 0; i < count; i++) {
    if (offset + LENGTH_BYTES > bytes.length) {
      throw new Error(`element ${i}: its ${LENGTH_BYTES}-byte length runs past the end of the data (${bytes.length - offset} bytes left)`)
    }
    const length = view.getUint32(offset, true)
    offset += LENGTH_BYTES
    if (length > bytes.length - offset) {
      const signed = length >= 2 ** 31 ? ` (${length - 2 ** 32} as a signed length)` : ''
      throw new Error(`element ${i}: length ${length}${signed} runs past the end of the data (${bytes.length - offset} bytes left)`)
    }
    let value: string
    try {
      value = utf8.decode(bytes.subarray(offset, offset + length))
    } catch {
      throw new Error(`element ${i} is not valid UTF-8, which onnxruntime-node needs to pass it to a model unchanged`)
    }
    const problem = unservableString(value)
    if (problem !== undefined) throw new Error(`element ${i} ${problem}`)
    values[i] = value
    offset += length
  }
  if (offset !== bytes.length) {
    throw new Error(`${bytes.length - offset} bytes are left after the ${count} BYTES elements of the shape`)
  }
  return values
}
