import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import Fastify, { type FastifyInstance } from 'fastify'
import { AJV_OPTIONS, batchListSchema, drainSchema, fileListSchema, pollSchema, schemaRefusal } from '../../src/http/schemas.js'
import { installErrorHandling } from '../../src/http/error-handler.js'
import { unquotedKey } from '../../src/http/idempotency-key.js'

// The query and path schemas of the routes, each route echoing what it was given: a
// refusal is a 400 with the field's message, and what the schemas take is what the
// hand-written checks before them took (whole numbers as digits only, no coercion).

const FILE = 'file-AAAAAAAAAAAAAAAAAAAAAAAA'
const BATCH = 'batch_AAAAAAAAAAAAAAAAAAAAAAAA'

let app: FastifyInstance

before(async () => {
  app = Fastify({ ajv: AJV_OPTIONS, schemaErrorFormatter: schemaRefusal, routerOptions: { maxParamLength: 300 } })
  installErrorHandling(app, { maxBodyBytes: 1024 })
  const echo = async (request: { query: unknown, params: unknown }) => ({ query: request.query, params: request.params })
  app.get('/infer/:id', { schema: pollSchema }, echo)
  app.post('/admin/drain', { schema: drainSchema }, echo)
  app.get('/v1/batches', { schema: batchListSchema }, echo)
  app.get('/v1/files', { schema: fileListSchema }, echo)
  await app.ready()
})

after(async () => { await app.close() })

async function answer (method: 'GET' | 'POST', url: string): Promise<{ status: number, body: Record<string, unknown> }> {
  const response = await app.inject({ method, url })
  return { status: response.statusCode, body: response.json() }
}

const WAIT = 'wait must be a whole number of milliseconds'
const DEADLINE = 'deadline_ms must be a whole number of milliseconds'
const KEY = 'the id in the path (the request\'s Idempotency-Key or X-Request-Id) must be 1-255 characters of A-Z a-z 0-9 . _ : - (optionally in double quotes)'

const refused: Array<[string, 'GET' | 'POST', string, string]> = [
  ...['abc', '-1', '1.5', '1e3', '', '%20', '%205', '0x10', '10ms', '1234567890', '+5'].map((wait): [string, 'GET' | 'POST', string, string] =>
    [`wait=${wait}`, 'GET', `/infer/k-1?wait=${wait}`, WAIT]),
  ['wait given twice', 'GET', '/infer/k-1?wait=1&wait=2', WAIT],
  ['a key with a space', 'GET', '/infer/a%20b', KEY],
  ['a key with a slash', 'GET', '/infer/a%2Fb', KEY],
  ['a half-quoted key', 'GET', '/infer/%22abc', KEY],
  ['an empty quoted key', 'GET', '/infer/%22%22', KEY],
  ['a 256-character key', 'GET', `/infer/${'k'.repeat(256)}`, KEY],
  ['deadline_ms=soon', 'POST', '/admin/drain?deadline_ms=soon', DEADLINE],
  ['deadline_ms=-5', 'POST', '/admin/drain?deadline_ms=-5', DEADLINE],
  ...['0', '101', '1e2', '5.0', ' 5', '0000100', 'x', ''].map((limit): [string, 'GET' | 'POST', string, string] =>
    [`batches limit=${limit}`, 'GET', `/v1/batches?limit=${encodeURIComponent(limit)}`, 'limit must be a whole number from 1 to 100']),
  ...['0', '10001', '99999', '1000000'].map((limit): [string, 'GET' | 'POST', string, string] =>
    [`files limit=${limit}`, 'GET', `/v1/files?limit=${limit}`, 'limit must be a whole number from 1 to 10000']),
  ['batches after a file id', 'GET', `/v1/batches?after=${FILE}`, 'after must be a batch id from a previous page'],
  ['files after a batch id', 'GET', `/v1/files?after=${BATCH}`, 'after must be an id from a previous page'],
  ['files order=up', 'GET', '/v1/files?order=up', "order must be 'asc' or 'desc'"],
  ['files order=ASC', 'GET', '/v1/files?order=ASC', "order must be 'asc' or 'desc'"]
]

const accepted: Array<[string, 'GET' | 'POST', string, object]> = [
  ['no wait', 'GET', '/infer/k-1', {}],
  ['wait=0', 'GET', '/infer/k-1?wait=0', { wait: '0' }],
  ['wait of nine digits', 'GET', '/infer/k-1?wait=999999999', { wait: '999999999' }],
  ['deadline_ms=0', 'POST', '/admin/drain?deadline_ms=0', { deadline_ms: '0' }],
  ['batches limit=1', 'GET', '/v1/batches?limit=1', { limit: '1' }],
  ['batches limit=100', 'GET', '/v1/batches?limit=100', { limit: '100' }],
  ['batches limit=007', 'GET', '/v1/batches?limit=007', { limit: '007' }],
  ['batches limit=000100', 'GET', '/v1/batches?limit=000100', { limit: '000100' }],
  ['batches after a batch id', 'GET', `/v1/batches?after=${BATCH}&limit=20`, { after: BATCH, limit: '20' }],
  ['files limit=10000', 'GET', '/v1/files?limit=10000', { limit: '10000' }],
  ['files limit=9999', 'GET', '/v1/files?limit=9999', { limit: '9999' }],
  ['files, every field', 'GET', `/v1/files?order=asc&limit=2&after=${FILE}&purpose=anything`, { order: 'asc', limit: '2', after: FILE, purpose: 'anything' }],
  ['an unknown query field is ignored', 'GET', '/v1/files?colour=blue', { colour: 'blue' }]
]

describe('query and path schemas', () => {
  for (const [what, method, url, message] of refused) {
    test(`${what} is a 400 with the field's message`, async () => {
      const { status, body } = await answer(method, url)
      assert.equal(status, 400, JSON.stringify(body))
      assert.deepEqual(body, { error: message })
    })
  }
  for (const [what, method, url, query] of accepted) {
    test(`${what} is taken as given`, async () => {
      const { status, body } = await answer(method, url)
      assert.equal(status, 200, JSON.stringify(body))
      assert.deepEqual(body.query, query)
    })
  }

  test('a key bare, quoted or with spaces around it names the same request', async () => {
    for (const id of ['k-1', '%22k-1%22', '%20k-1%20', '%20%22k-1%22']) {
      const { status, body } = await answer('GET', `/infer/${id}`)
      assert.equal(status, 200, id)
      assert.equal(unquotedKey((body.params as { id: string }).id), 'k-1', id)
    }
    assert.equal(unquotedKey(`"${'k'.repeat(255)}"`), 'k'.repeat(255))
    assert.equal(unquotedKey('a:b.c_d-e'), 'a:b.c_d-e')
  })
})
