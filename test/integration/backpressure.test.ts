import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { journalKeys } from '../../src/journal/redis/keys.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { RedisServer } from '../helpers/redis-server.js'
import { classifierBody, spinBody, spinIterations } from '../helpers/requests.js'

// Issue 6, item 2: a bounded queue per model answers 429 + Retry-After before anything
// is journaled, and @fastify/under-pressure answers 503 + Retry-After and fails readiness.

const MAX_QUEUE_SIZE = 2
/** Long enough that the queue stays full while the test probes it, even on a busy machine. */
const SPIN_MS = 400

let redis: RedisServer
before(async () => { redis = await RedisServer.start() })
after(async () => { await redis?.stop() })

async function journalReady (testApp: TestApp): Promise<void> {
  const deadline = Date.now() + 5000
  while (testApp.journal.unavailableReason() !== undefined) {
    if (Date.now() > deadline) throw new Error(`journal not available: ${testApp.journal.unavailableReason()}`)
    await sleep(20)
  }
}

describe('a full queue', () => {
  test('answers 429 with Retry-After, journals nothing for the refused request, and recovers', async (t) => {
    const namespace = `backpressure-${randomUUID().slice(0, 8)}`
    const testApp = await buildTestApp(t, {
      models: ['spin'],
      env: { REDIS_URL: redis.url, JOURNAL_NAMESPACE: namespace, MAX_QUEUE_SIZE: String(MAX_QUEUE_SIZE), MODEL_INSTANCES: '1' }
    })
    await journalReady(testApp)
    const { app } = testApp
    const keys = journalKeys(namespace, 1)
    const client = redis.client()
    t.after(() => client.disconnect())
    const slow = spinBody(spinIterations(SPIN_MS))

    // respond-async answers once the request is journaled and handed to the batcher: one runs, two wait.
    for (const key of ['running', 'queued-1', 'queued-2']) {
      const accepted = await app.inject({ method: 'POST', url: '/v2/models/spin/infer', headers: { 'idempotency-key': key, prefer: 'respond-async' }, payload: slow })
      assert.equal(accepted.statusCode, 202, accepted.body)
    }

    const refused = await app.inject({ method: 'POST', url: '/v2/models/spin/infer', headers: { 'idempotency-key': 'refused' }, payload: slow })
    assert.equal(refused.statusCode, 429, refused.body)
    assert.equal(refused.headers['retry-after'], '1')
    assert.equal(refused.headers['x-request-id'], 'refused')
    assert.match(refused.json<{ error: string }>().error, /model 'spin' has 2 requests queued; retry later/)

    const refusedOnInfer = await app.inject({ method: 'POST', url: '/infer', payload: { model: 'spin', ...slow } })
    assert.equal(refusedOnInfer.statusCode, 429, 'the same bound on /infer')

    // Nothing of the refused request reached the journal: it is unknown to GET /infer/{id} and absent in Redis.
    const poll = await app.inject({ method: 'GET', url: '/infer/refused' })
    assert.equal(poll.statusCode, 404, poll.body)
    assert.equal(await client.exists(keys.record('refused')), 0)
    assert.equal(await client.exists(keys.record('queued-2')), 1, 'the accepted ones are journaled')

    const metrics = await testApp.metrics.registry.metrics()
    assert.match(metrics, /^spotgate_requests_total\{model="spin",version="1",outcome="queue_full"\} 2$/m)

    // Once the queue drains, the same request is taken.
    const last = await app.inject({ method: 'GET', url: '/infer/queued-2?wait=10000' })
    assert.equal(last.statusCode, 200, last.body)
    const retried = await app.inject({ method: 'POST', url: '/v2/models/spin/infer', headers: { 'idempotency-key': 'refused' }, payload: spinBody(0) })
    assert.equal(retried.statusCode, 200, retried.body)
    assert.notEqual(retried.headers['idempotent-replayed'], 'true', 'a refused request left no record to replay')
  })

  test('a retry of a request already accepted still gets its answer (or a 202) while the queue is full', async (t) => {
    const namespace = `backpressure-${randomUUID().slice(0, 8)}`
    const testApp = await buildTestApp(t, {
      models: ['spin'],
      env: { REDIS_URL: redis.url, JOURNAL_NAMESPACE: namespace, MAX_QUEUE_SIZE: String(MAX_QUEUE_SIZE), MODEL_INSTANCES: '1', IDEMPOTENCY_WAIT_MS: '0' }
    })
    await journalReady(testApp)
    const { app } = testApp
    const quick = spinBody(0)
    const done = await app.inject({ method: 'POST', url: '/v2/models/spin/infer', headers: { 'idempotency-key': 'done-before' }, payload: quick })
    assert.equal(done.statusCode, 200, done.body)

    const slow = spinBody(spinIterations(SPIN_MS))
    for (const key of ['busy', 'waiting-1', 'waiting-2']) {
      const accepted = await app.inject({ method: 'POST', url: '/v2/models/spin/infer', headers: { 'idempotency-key': key, prefer: 'respond-async' }, payload: slow })
      assert.equal(accepted.statusCode, 202, accepted.body)
    }
    assert.equal((await app.inject({ method: 'POST', url: '/v2/models/spin/infer', payload: slow })).statusCode, 429, 'new work is refused')

    const replayed = await app.inject({ method: 'POST', url: '/v2/models/spin/infer', headers: { 'idempotency-key': 'done-before' }, payload: quick })
    assert.equal(replayed.statusCode, 200, replayed.body)
    assert.equal(replayed.headers['idempotent-replayed'], 'true')
    assert.equal(replayed.body, done.body)

    const pending = await app.inject({ method: 'POST', url: '/v2/models/spin/infer', headers: { 'idempotency-key': 'waiting-2' }, payload: slow })
    assert.equal(pending.statusCode, 202, pending.body)
    assert.equal(pending.headers.location, '/infer/waiting-2')

    const reused = await app.inject({ method: 'POST', url: '/v2/models/spin/infer', headers: { 'idempotency-key': 'done-before' }, payload: spinBody(1) })
    assert.equal(reused.statusCode, 422, reused.body)
  })

  test('concurrent arrivals cannot push the queue past its bound', async (t) => {
    const testApp = await buildTestApp(t, {
      models: ['spin'],
      env: { REDIS_URL: redis.url, JOURNAL_NAMESPACE: `burst-${randomUUID().slice(0, 8)}`, MAX_QUEUE_SIZE: String(MAX_QUEUE_SIZE), MODEL_INSTANCES: '1' }
    })
    await journalReady(testApp)
    const slow = spinBody(spinIterations(100))
    const answers = await Promise.all(Array.from({ length: 8 }, () => testApp.app.inject({ method: 'POST', url: '/v2/models/spin/infer', headers: { prefer: 'respond-async' }, payload: slow })))
    const accepted = answers.filter((a) => a.statusCode === 202).length
    // One running plus MAX_QUEUE_SIZE waiting; the rest are refused.
    assert.ok(accepted <= 1 + MAX_QUEUE_SIZE, `${accepted} of 8 concurrent requests accepted with MAX_QUEUE_SIZE ${MAX_QUEUE_SIZE}: ${answers.map((a) => a.statusCode).join(',')}`)
  })
})

describe('under pressure', () => {
  test('inference answers 503 + Retry-After, readiness fails with the reason, liveness and metrics still answer', async (t) => {
    const { app } = await buildTestApp(t, { models: ['classifier'], env: { PRESSURE_MAX_HEAP_BYTES: '1' } })
    // @fastify/under-pressure samples memory once a second.
    let ready = await app.inject({ method: 'GET', url: '/health/ready' })
    const deadline = Date.now() + 5000
    while (ready.statusCode === 200 && Date.now() < deadline) {
      await sleep(100)
      ready = await app.inject({ method: 'GET', url: '/health/ready' })
    }
    assert.equal(ready.statusCode, 503, ready.body)
    assert.equal(ready.headers['retry-after'], '1')
    assert.match(JSON.stringify(ready.json()), /under pressure/)

    for (const url of ['/v2/models/classifier/infer', '/infer']) {
      const payload = url === '/infer' ? { model: 'classifier', ...classifierBody(1) } : classifierBody(1)
      const refused = await app.inject({ method: 'POST', url, payload })
      assert.equal(refused.statusCode, 503, refused.body)
      assert.equal(refused.headers['retry-after'], '1')
      assert.match(refused.json<{ error: string }>().error, /overloaded \(heapUsedBytes \d+\); retry later/)
    }

    assert.equal((await app.inject({ method: 'GET', url: '/health/live' })).statusCode, 200)
    assert.equal((await app.inject({ method: 'GET', url: '/v2/health/live' })).statusCode, 200)
    const metrics = await app.inject({ method: 'GET', url: '/metrics' })
    assert.equal(metrics.statusCode, 200)
    assert.match(metrics.body, /^spotgate_requests_total\{model="",version="",outcome="unavailable"\} 2$/m)
    assert.equal((await app.inject({ method: 'GET', url: '/v2/models/classifier' })).statusCode, 200, 'metadata is no inference')
  })
})
