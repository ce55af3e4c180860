import secureJson from 'secure-json-parse'
import { InvalidRequest } from '../errors.js'
import { depthMessage, excessiveDepth } from '../json-depth.js'

/**
 * Parses the JSON of a request (`what` names it in errors: "the body", "the binary
 * request's JSON header"). Refuses, with a 400 that says which: nesting past
 * MAX_JSON_DEPTH (checked before parsing), an empty text, text that is not JSON, and `__proto__` or
 * `constructor.prototype` keys (prototype pollution).
 */
export function parseJsonBytes (bytes: Buffer, what: string, start = 0, end = bytes.length): unknown {
  if (excessiveDepth(bytes, undefined, start, end) !== undefined) throw new InvalidRequest(depthMessage(what))
  const text = bytes.toString('utf8', start, end)
  if (text.trim() === '') throw new InvalidRequest(`${what} is empty`)
  try {
    return secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' })
  } catch (error) {
    const message = (error as Error).message
    if (/prototype property/.test(message)) throw new InvalidRequest(`${what} has a "__proto__" or "constructor.prototype" key, which is refused`)
    throw new InvalidRequest(`${what} is not valid JSON: ${message}`)
  }
}
