import { performance } from 'node:perf_hooks'
import { setImmediate as setImmediatePromise } from 'node:timers/promises'
import { decodeRequestBody } from '../http/v2-json.js'
import { depthMessage, excessiveDepth, MAX_JSON_DEPTH } from '../json-depth.js'
import type { ServedModel } from '../inference/model-registry.js'
import type { BatchError } from './objects.js'
import type { ShardRange } from './store.js'

// An input file's lines: where each one is, what it must hold, and the shards they are
// cut into. Validation reads the whole file once; a worker reads only its shard's bytes.

export interface InputLine {
  readonly customId: string
  /** The v2 request body of the line. */
  readonly body: Record<string, unknown>
}

/** Byte ranges [start, end) of each line, without its newline (and a trailing '\r'); a UTF-8 byte order mark at the start is skipped. */
export function lineRanges (data: Buffer): Array<[number, number]> {
  const ranges: Array<[number, number]> = []
  let start = data.length >= 3 && data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf ? 3 : 0
  while (start < data.length) {
    let end = data.indexOf(0x0a, start)
    const next = end === -1 ? data.length : end + 1
    if (end === -1) end = data.length
    if (end > start && data[end - 1] === 0x0d) end--
    ranges.push([start, end])
    start = next
  }
  return ranges
}

/** Counts lines as lineRanges would, without keeping them. */
export function countLines (data: Buffer): number {
  let count = 0
  let start = 0
  while (start < data.length) {
    const end = data.indexOf(0x0a, start)
    count++
    start = end === -1 ? data.length : end + 1
  }
  return count
}

/** A line's JSON, or the reason it is not a valid line of this batch (as an error code and message). */
export function parseLine (text: string, endpoint: string): InputLine | { code: string, message: string } {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    return { code: 'invalid_json_line', message: `not valid JSON: ${(error as Error).message}` }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { code: 'invalid_json_line', message: 'a line must be a JSON object with custom_id, method, url and body' }
  const line = value as Record<string, unknown>
  if (typeof line.custom_id !== 'string' || line.custom_id === '' || line.custom_id.length > 512) return { code: 'invalid_custom_id', message: 'custom_id must be a string of 1 to 512 characters' }
  if (line.method !== 'POST') return { code: 'invalid_method', message: `method must be "POST", not ${JSON.stringify(line.method)?.slice(0, 50) ?? 'absent'}` }
  if (line.url !== endpoint) return { code: 'mismatched_url', message: `url ${JSON.stringify(line.url)?.slice(0, 200) ?? 'absent'} is not the batch's endpoint ${endpoint}` }
  if (typeof line.body !== 'object' || line.body === null || Array.isArray(line.body)) return { code: 'invalid_body', message: 'body must be a v2 inference request (a JSON object)' }
  return { customId: line.custom_id, body: line.body as Record<string, unknown> }
}

/** Decodes a line's body for `model` as an online request would be; throws InvalidRequest (400) naming what is wrong. */
export function decodeLineBody (body: Record<string, unknown>, model: ServedModel): ReturnType<typeof decodeRequestBody> {
  const decoded = decodeRequestBody(body, model.signature, model.limits)
  if (decoded.binaryOutputs !== undefined) throw Object.assign(new Error('binary outputs (binary_data, binary_data_output) cannot be written to a JSONL output file'), { statusCode: 400 })
  return decoded
}

export interface ValidatedInput {
  readonly total: number
  readonly shards: ShardRange[]
  readonly errors: BatchError[]
}

/** Longest stretch validation holds the event loop before it lets other work run. */
const YIELD_EVERY_MS = 10

/** Errors listed in a failed batch's `errors`; past this only their number is told. */
const MAX_LISTED_ERRORS = 100

/**
 * Checks every line (JSON, custom_id unique, method, url equal to the endpoint, the body
 * a valid request for the pinned model version) and cuts the file into shards of
 * `shardLines` contiguous lines. Line numbers in errors are 1-based, as an editor shows them.
 * It gives the event loop a turn every few milliseconds, so health checks and online
 * requests are answered while a large file is checked.
 */
export async function validateInput (data: Buffer, endpoint: string, model: ServedModel, limits: { maxLines: number, shardLines: number }): Promise<ValidatedInput> {
  const ranges = lineRanges(data)
  const errors: BatchError[] = []
  let extraErrors = 0
  const fail = (line: number | null, code: string, message: string): void => {
    if (errors.length < MAX_LISTED_ERRORS) errors.push({ code, line, message, param: null })
    else extraErrors++
  }
  if (ranges.length === 0) fail(null, 'empty_file', 'the input file has no lines')
  if (ranges.length > limits.maxLines) {
    fail(null, 'too_many_lines', `the input file has ${ranges.length} lines; at most ${limits.maxLines} (MAX_BATCH_LINES)`)
    return { total: ranges.length, shards: [], errors }
  }
  const blank = ([start, end]: [number, number]): boolean => data.toString('utf8', start, end).trim() === ''
  if (ranges.length > 0 && ranges.every(blank)) {
    fail(null, 'empty_file', 'the input file has only blank lines')
    return { total: ranges.length, shards: [], errors }
  }
  const seen = new Map<string, number>()
  const check = (start: number, end: number, number: number): void => {
    // A line wraps its request body in one more object than an online request.
    if (excessiveDepth(data, MAX_JSON_DEPTH + 1, start, end) !== undefined) return fail(number, 'invalid_json_line', depthMessage('the line', MAX_JSON_DEPTH + 1))
    const text = data.toString('utf8', start, end)
    if (text.trim() === '') return fail(number, 'invalid_json_line', 'empty line')
    const parsed = parseLine(text, endpoint)
    if ('code' in parsed) return fail(number, parsed.code, parsed.message)
    const first = seen.get(parsed.customId)
    if (first !== undefined) return fail(number, 'duplicate_custom_id', `custom_id ${JSON.stringify(parsed.customId)} is also on line ${first}`)
    seen.set(parsed.customId, number)
    try {
      decodeLineBody(parsed.body, model)
    } catch (error) {
      fail(number, 'invalid_body', (error as Error).message)
    }
  }
  let turnStarted = performance.now()
  for (let index = 0; index < ranges.length; index++) {
    check(ranges[index][0], ranges[index][1], index + 1)
    if (performance.now() - turnStarted > YIELD_EVERY_MS) {
      await setImmediatePromise()
      turnStarted = performance.now()
    }
  }
  if (extraErrors > 0) errors.push({ code: 'too_many_errors', line: null, message: `${extraErrors} more lines have errors`, param: null })
  const shards: ShardRange[] = []
  for (let first = 0; first < ranges.length; first += limits.shardLines) {
    const count = Math.min(limits.shardLines, ranges.length - first)
    const start = ranges[first][0]
    const end = first + count < ranges.length ? ranges[first + count][0] : data.length
    shards.push({ start, end, firstLine: first, count })
  }
  return { total: ranges.length, shards, errors }
}

/** `/v2/models/{m}[/versions/{v}]/infer` → the model and the version it names, if any; undefined for anything else. */
export function parseEndpoint (endpoint: string): { model: string, version?: string } | undefined {
  const match = /^\/v2\/models\/([A-Za-z0-9_.-]{1,128})(?:\/versions\/([1-9][0-9]{0,8}))?\/infer$/.exec(endpoint)
  if (match === null) return undefined
  return { model: match[1], ...(match[2] !== undefined && { version: match[2] }) }
}
