import type { FastifySchemaValidationError } from 'fastify'
import { BATCH_ID, FILE_ID } from '../batch/objects.js'
import { InvalidRequest } from '../errors.js'
import { ERROR_MESSAGE_KEYWORD, refusalMessage, type SchemaError } from '../schema.js'
import { IDEMPOTENCY_KEY_FORM } from './idempotency-key.js'

// The query strings and path parameters the routes take, as JSON schemas. Fastify
// compiles them at start-up and checks them before the handler runs; a refusal is the
// 400 named by the field's `errorMessage`. Values stay strings, matched by the same
// patterns the routes used before (ajv's number coercion would also take "1e3", " 5"
// or "0x10"), and the handlers turn them into numbers.
//
// The inference routes take no query string, and their model and version are checked
// by the registry's lookup: a name is valid exactly when it is served, and the 404
// names the versions there are (README, "HTTP API").

/** Fastify's ajv options: the annotation keyword, and the refused subschema in each error. */
export const AJV_OPTIONS = { customOptions: { keywords: [ERROR_MESSAGE_KEYWORD], verbose: true } }

interface StringField {
  readonly type: 'string'
  readonly pattern?: string
  readonly enum?: readonly string[]
  readonly errorMessage?: string
}

interface ObjectSchema {
  readonly type: 'object'
  readonly properties: Readonly<Record<string, StringField>>
  readonly required?: readonly string[]
}

function object (properties: Record<string, StringField>, required?: string[]): ObjectSchema {
  return { type: 'object', properties, ...(required !== undefined && { required }) }
}

/** A whole number of milliseconds, as 1 to 9 digits. */
function milliseconds (name: string): StringField {
  return { type: 'string', pattern: '^\\d{1,9}$', errorMessage: `${name} must be a whole number of milliseconds` }
}

/**
 * A page size from 1 to `max` (a power of ten), as 1 to 6 digits: JSON Schema bounds
 * numbers, not the digits of a string, so the range is part of the pattern.
 */
function limit (max: number): StringField {
  const digits = String(max).length - 1
  if (max !== 10 ** digits || digits < 1 || digits > 5) throw new Error(`limit ${max} is not a power of ten from 10 to 100000`)
  return {
    type: 'string',
    pattern: `^(?=\\d{1,6}$)0*(?:[1-9]\\d{0,${digits - 1}}|${max})$`,
    errorMessage: `limit must be a whole number from 1 to ${max}`
  }
}

/** `GET /infer/{id}`: an Idempotency-Key (bare or quoted) and how long to wait. */
export const pollSchema = {
  params: object({
    id: { type: 'string', pattern: IDEMPOTENCY_KEY_FORM.source, errorMessage: 'the id in the path (the request\'s Idempotency-Key or X-Request-Id) must be 1-255 characters of A-Z a-z 0-9 . _ : - (optionally in double quotes)' }
  }, ['id']),
  querystring: object({ wait: milliseconds('wait') })
}

/** `POST /admin/drain`: the drain's deadline. */
export const drainSchema = {
  querystring: object({ deadline_ms: milliseconds('deadline_ms') })
}

export const MAX_BATCH_PAGE = 100
export const MAX_FILE_PAGE = 10_000

/** `GET /v1/batches`: OpenAI's cursor page. */
export const batchListSchema = {
  querystring: object({
    limit: limit(MAX_BATCH_PAGE),
    after: { type: 'string', pattern: BATCH_ID.source, errorMessage: 'after must be a batch id from a previous page' }
  })
}

/** `GET /v1/files`: OpenAI's cursor page, its order and a purpose to filter by. */
export const fileListSchema = {
  querystring: object({
    order: { type: 'string', enum: ['asc', 'desc'], errorMessage: "order must be 'asc' or 'desc'" },
    limit: limit(MAX_FILE_PAGE),
    after: { type: 'string', pattern: FILE_ID.source, errorMessage: 'after must be an id from a previous page' },
    purpose: { type: 'string' }
  })
}

/** Fastify's `schemaErrorFormatter`: the refused field's message, as a 400. */
export function schemaRefusal (errors: FastifySchemaValidationError[], dataVar: string): Error {
  const [first] = errors as unknown as SchemaError[]
  return new InvalidRequest(refusalMessage(first) ?? `${dataVar}${first.instancePath} ${first.message ?? 'is not valid'}`)
}
