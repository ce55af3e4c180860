import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { buildTestApp, fileCleanup, type TestApp } from '../helpers/app.js'
import { classifierBody, spinBody, spinIterations, tensor } from '../helpers/requests.js'

// Every reply gets X-Request-Id, and Retry-After exactly when it asks the client to come
// back (429, 503, a 202 with a Location to poll), from one hook, whichever route, hook or
// error handler answered. One test per status code the API answers with.

const ADMIN_TOKEN = 'reply-headers-admin'
const MAX_BODY_BYTES = 64 * 1024
const MAX_QUEUE_SIZE = 1

const cleanup = fileCleanup()
let testApp: TestApp
before(async () => {
  testApp = await buildTestApp(cleanup, {
    models: ['classifier', 'spin', 'failing'],
    env: { ADMIN_TOKEN, MAX_BODY_BYTES: String(MAX_BODY_BYTES), MAX_QUEUE_SIZE: String(MAX_QUEUE_SIZE) }
  })
})
after(() => cleanup.runAll())

async function send (options: InjectOptions, status: number): Promise<LightMyRequestResponse> {
  const response = await testApp.app.inject(options)
  assert.equal(response.statusCode, status, response.body)
  const id = response.headers['x-request-id']
  assert.equal(typeof id, 'string', 'X-Request-Id')
  assert.ok((id as string).length > 0, 'X-Request-Id')
  return response
}

function assertRetryAfter (response: LightMyRequestResponse, expected: boolean): void {
  assert.equal(response.headers['retry-after'], expected ? '1' : undefined, `Retry-After on ${response.statusCode}`)
}

const infer = (key: string, payload: object, headers: Record<string, string> = {}): InjectOptions =>
  ({ method: 'POST', url: '/v2/models/classifier/infer', headers: { 'idempotency-key': key, ...headers }, payload })

/** failing: Reshape(x [1, 4], shape); a shape that does not hold 4 elements makes onnxruntime throw. */
const failingBody = { inputs: [tensor('x', 'FP32', [1, 4], [0, 1, 2, 3]), tensor('shape', 'INT64', [2], [3, 5])] }

describe('the headers of every reply', () => {
  test('200: X-Request-Id is the Idempotency-Key, no Retry-After', async () => {
    const response = await send(infer('headers-200', classifierBody()), 200)
    assert.equal(response.headers['x-request-id'], 'headers-200')
    assertRetryAfter(response, false)
    const health = await send({ method: 'GET', url: '/health/live' }, 200)
    assertRetryAfter(health, false)
  })

  test('202 with Location (respond-async, and a poll of a pending request): Retry-After', async () => {
    const accepted = await send({
      method: 'POST',
      url: '/v2/models/spin/infer',
      headers: { 'idempotency-key': 'headers-202', prefer: 'respond-async' },
      payload: spinBody(spinIterations(300))
    }, 202)
    assert.equal(accepted.headers['x-request-id'], 'headers-202')
    assert.equal(accepted.headers.location, '/infer/headers-202')
    assertRetryAfter(accepted, true)
    const polled = await send({ method: 'GET', url: '/infer/headers-202' }, 202)
    assert.equal(polled.headers['x-request-id'], 'headers-202', 'a poll names the polled request')
    assertRetryAfter(polled, true)
    const done = await send({ method: 'GET', url: '/infer/headers-202?wait=10000' }, 200)
    assert.equal(done.headers['x-request-id'], 'headers-202')
    assertRetryAfter(done, false)
  })

  test('400 (bad tensors, a bad Idempotency-Key, a URL that is not percent-encoding): no Retry-After', async () => {
    const badTensor = await send(infer('headers-400', { inputs: [tensor('input', 'FP32', [1, 3], [1, 2, 3])] }), 400)
    assert.equal(badTensor.headers['x-request-id'], 'headers-400')
    assertRetryAfter(badTensor, false)
    const badKey = await send(infer('not a key!', classifierBody()), 400)
    assert.notEqual(badKey.headers['x-request-id'], 'not a key!', 'a refused key is not the request id')
    assertRetryAfter(badKey, false)
    const badUrl = await send({ method: 'GET', url: '/v2/models/%E0%A4%A/ready' }, 400)
    assertRetryAfter(badUrl, false)
  })

  test('401 (wrong admin token): no Retry-After', async () => {
    const response = await send({ method: 'POST', url: '/admin/drain', headers: { authorization: 'Bearer wrong' } }, 401)
    assertRetryAfter(response, false)
  })

  test('404 (unknown model, unknown route, unknown polled id): no Retry-After', async () => {
    assertRetryAfter(await send({ method: 'POST', url: '/v2/models/nope/infer', payload: classifierBody() }, 404), false)
    assertRetryAfter(await send({ method: 'GET', url: '/no/such/route' }, 404), false)
    const poll = await send({ method: 'GET', url: '/infer/headers-unknown' }, 404)
    assert.equal(poll.headers['x-request-id'], 'headers-unknown')
    assertRetryAfter(poll, false)
  })

  test('413 (body over MAX_BODY_BYTES) and 415 (content type): no Retry-After', async () => {
    const big = await send({ ...infer('headers-413', {}), payload: JSON.stringify({ pad: 'x'.repeat(MAX_BODY_BYTES) }), headers: { 'content-type': 'application/json' } }, 413)
    assertRetryAfter(big, false)
    const text = await send({ method: 'POST', url: '/v2/models/classifier/infer', headers: { 'content-type': 'text/plain' }, payload: 'hello' }, 415)
    assertRetryAfter(text, false)
  })

  test('422 (a key reused with another body): no Retry-After', async () => {
    await send(infer('headers-422', classifierBody(1)), 200)
    const reused = await send(infer('headers-422', classifierBody(2)), 422)
    assert.equal(reused.headers['x-request-id'], 'headers-422')
    assertRetryAfter(reused, false)
  })

  test('429 (queue full): Retry-After', async () => {
    const slow = spinBody(spinIterations(400))
    for (const key of ['headers-429-running', 'headers-429-queued']) {
      await send({ method: 'POST', url: '/v2/models/spin/infer', headers: { 'idempotency-key': key, prefer: 'respond-async' }, payload: slow }, 202)
    }
    const refused = await send({ method: 'POST', url: '/v2/models/spin/infer', headers: { 'idempotency-key': 'headers-429' }, payload: slow }, 429)
    assert.equal(refused.headers['x-request-id'], 'headers-429')
    assertRetryAfter(refused, true)
    await send({ method: 'GET', url: '/infer/headers-429-queued?wait=10000' }, 200)
  })

  test('500 (inference failure): no Retry-After', async () => {
    const response = await send({ method: 'POST', url: '/v2/models/failing/infer', headers: { 'idempotency-key': 'headers-500' }, payload: failingBody }, 500)
    assert.equal(response.headers['x-request-id'], 'headers-500')
    assertRetryAfter(response, false)
  })

  test('503 (not ready, draining): Retry-After on readiness and on refused inference', async () => {
    testApp.state.enter('draining')
    const ready = await send({ method: 'GET', url: '/health/ready' }, 503)
    assertRetryAfter(ready, true)
    assert.equal(ready.headers.connection, 'close', 'a draining instance closes its connections')
    testApp.state.stopAcceptingRequests()
    const refused = await send(infer('headers-503', classifierBody()), 503)
    assert.equal(refused.headers['x-request-id'], 'headers-503')
    assert.deepEqual(refused.json(), { error: 'draining: this instance takes no new requests' })
    assertRetryAfter(refused, true)
  })
})
