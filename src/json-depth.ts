/**
 * How deeply JSON may nest. A v2 request needs about ten levels (body, inputs, a tensor,
 * its data nested by shape); JSON.parse has no limit of its own, so a small body of
 * millions of `[` would hold the event loop for seconds and take gigabytes to parse.
 */
export const MAX_JSON_DEPTH = 64

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d

/**
 * The first nesting level past `maxDepth` in the JSON text `bytes[start, end)`, or
 * undefined when it nests no deeper. Brackets inside strings do not count. The text need
 * not be valid JSON: this only bounds what JSON.parse is then given.
 */
export function excessiveDepth (bytes: Uint8Array, maxDepth = MAX_JSON_DEPTH, start = 0, end = bytes.length): number | undefined {
  let depth = 0
  let inString = false
  for (let i = start; i < end; i++) {
    const byte = bytes[i]
    if (inString) {
      if (byte === BACKSLASH) i++
      else if (byte === QUOTE) inString = false
    } else if (byte === QUOTE) {
      inString = true
    } else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
      if (++depth > maxDepth) return depth
    } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) {
      depth--
    }
  }
  return undefined
}

/** The message of a refusal for JSON nested past `maxDepth`. */
export function depthMessage (what: string, maxDepth = MAX_JSON_DEPTH): string {
  return `${what} nests arrays and objects more than ${maxDepth} levels deep`
}
