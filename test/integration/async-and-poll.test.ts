import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { RedisRequestJournal } from '../../src/journal/redis/request-journal.js'
import { fileCleanup } from '../helpers/app.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository } from '../helpers/model-repo.js'
import { completion, fingerprintOf, rawEntry, redisJournal } from '../helpers/redis-journal.js'
import { RedisServer } from '../helpers/redis-server.js'
import { classifierBody, spinBody, spinIterations } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'

// The README's HTTP API: `Prefer: respond-async` and `GET /infer/{id}[?wait=<ms>]`, on two real
// gateways sharing a redis-server. A third "instance" (a RedisJournal in this process,
// the same code a gateway runs) plays a peer that accepted a request and has not
// finished it, so a poll can be held open for as long as a test needs.

const MAX_POLL_WAIT_MS = Math.round(allow(3000))
const IDEMPOTENCY_WAIT_MS = Math.round(allow(2000))
const NAMESPACE = `poll-${randomUUID().slice(0, 8)}`

let redis: RedisServer
let a: GatewayProcess
let b: GatewayProcess
let peer: RedisRequestJournal
const PEER = 'poll-peer'
const fileScope = fileCleanup()

before(async () => {
  redis = await RedisServer.start()
  const repo = await makeRepository(['classifier', 'spin'])
  fileScope.add(repo.cleanup)
  const env = (instance: string): Record<string, string> => ({
    MODEL_REPOSITORY: repo.dir,
    REDIS_URL: redis.url,
    JOURNAL_NAMESPACE: NAMESPACE,
    INSTANCE_ID: instance,
    MAX_POLL_WAIT_MS: String(MAX_POLL_WAIT_MS),
    IDEMPOTENCY_WAIT_MS: String(IDEMPOTENCY_WAIT_MS),
    REDIS_COMMAND_TIMEOUT_MS: '500',
    LOG_LEVEL: 'warn'
  })
  ;[a, b] = await Promise.all([GatewayProcess.start(fileScope, { env: env('poll-a') }), GatewayProcess.start(fileScope, { env: env('poll-b') })])
  // Its lease is long enough that no gateway takes the peer's requests over while a test holds them pending.
  peer = (await redisJournal(fileScope, redis.url, { namespace: NAMESPACE, instanceId: PEER, leaseTtlMs: 120_000 })).journal
  await Promise.all([a.waitReady(), b.waitReady()])
})

after(async () => {
  await fileScope.runAll()
  await redis?.stop()
})

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly body: string
  /** performance.now() when the body had arrived. */
  readonly at: number
  readonly ms: number
}

async function timed (call: () => Promise<Response>): Promise<Answer> {
  const started = performance.now()
  const response = await call()
  const body = await response.text()
  const at = performance.now()
  return { status: response.status, headers: response.headers, body, at, ms: at - started }
}

function post (gateway: GatewayProcess, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return timed(() => gateway.post(path, body, { headers }))
}

function poll (gateway: GatewayProcess, path: string): Promise<Answer> {
  return timed(() => gateway.fetch(path, { signal: AbortSignal.timeout(15_000) }))
}

function key (label: string): string {
  return `${label}-${randomUUID()}`
}

/** A request the in-process peer accepted and has not finished. */
async function peerPending (label: string): Promise<string> {
  const id = key(label)
  const result = await peer.accept(rawEntry(id, PEER, fingerprintOf(id)))
  assert.equal(result.accepted, true)
  return id
}

async function peerComplete (id: string, text: string): Promise<void> {
  await peer.complete(completion(id, 'done', { statusCode: 200, contentType: 'application/json; charset=utf-8', body: Buffer.from(JSON.stringify({ answeredBy: text })) }, fingerprintOf(id)))
}

test('Prefer: respond-async answers 202 at once with Location, Preference-Applied and the request id', async () => {
  const k = key('async')
  const accepted = await post(a, '/v2/models/spin/infer', spinBody(spinIterations(800)), { 'idempotency-key': k, prefer: 'respond-async' })
  assert.equal(accepted.status, 202, accepted.body)
  assert.ok(accepted.ms < allow(400), `202 took ${accepted.ms.toFixed(0)} ms; it must not wait for the ~800 ms run`)
  assert.equal(accepted.headers.get('location'), `/infer/${k}`)
  assert.equal(accepted.headers.get('preference-applied'), 'respond-async')
  assert.equal(accepted.headers.get('x-request-id'), k)
  assert.deepEqual(JSON.parse(accepted.body), { id: k, status: 'queued' })

  for (const gateway of [a, b]) {
    const pending = await poll(gateway, `/infer/${k}`)
    assert.equal(pending.status, 202, pending.body)
    assert.equal(pending.headers.get('x-request-id'), k)
    assert.equal(pending.headers.get('location'), `/infer/${k}`)
    assert.ok(['queued', 'running'].includes(JSON.parse(pending.body).status), pending.body)
    assert.ok(pending.ms < allow(300), `a poll without wait took ${pending.ms.toFixed(0)} ms`)
  }

  const done = await poll(a, `/infer/${k}?wait=5000`)
  assert.equal(done.status, 200, done.body)
  const result = JSON.parse(done.body) as { model_name: string, outputs: Array<{ name: string, shape: number[] }> }
  assert.equal(result.model_name, 'spin')
  assert.deepEqual(result.outputs.map((o) => [o.name, o.shape]), [['y', [1, 64]]])
  // The answer is stored just after it is sent: a peer asked at once may wait a moment for it.
  const onPeer = await poll(b, `/infer/${k}?wait=2000`)
  assert.equal(onPeer.status, 200)
  assert.equal(onPeer.body, done.body)
})

test('respond-async without a key: the server-made id in X-Request-Id and Location finds the result', async () => {
  const accepted = await post(b, '/infer', { model: 'classifier', ...classifierBody(2) }, { prefer: 'wait=10, respond-async' })
  assert.equal(accepted.status, 202, accepted.body)
  assert.equal(accepted.headers.get('preference-applied'), 'respond-async')
  const id = accepted.headers.get('x-request-id')
  assert.ok(id !== null && id.length > 0)
  assert.equal(accepted.headers.get('location'), `/infer/${id}`)
  assert.equal(JSON.parse(accepted.body).id, id)
  for (const gateway of [b, a]) {
    const done = await poll(gateway, `${accepted.headers.get('location') ?? ''}?wait=2000`)
    assert.equal(done.status, 200, done.body)
    assert.equal(JSON.parse(done.body).model_name, 'classifier')
  }
})

test('a retry with Prefer: respond-async of a request still running answers 202 at once, not after IDEMPOTENCY_WAIT_MS', async (t) => {
  const k = key('async-retry')
  const body = spinBody(spinIterations(1000))
  const accepted = await post(a, '/v2/models/spin/infer', body, { 'idempotency-key': k, prefer: 'respond-async' })
  assert.equal(accepted.status, 202, accepted.body)
  t.after(async () => { await (await a.fetch(`/infer/${k}?wait=5000`)).text() })
  // Both retries are sent together, while the ~1 s run is still going.
  const retries = await Promise.all([b, a].map((gateway) => post(gateway, '/v2/models/spin/infer', body, { 'idempotency-key': k, prefer: 'respond-async' })))
  const names = ['peer', 'same instance']
  retries.forEach((retry, i) => t.diagnostic(`retry on the ${names[i]} answered ${retry.status} after ${retry.ms.toFixed(0)} ms`))
  retries.forEach((retry, i) => {
    assert.equal(retry.status, 202, `${names[i]}: ${retry.status} after ${retry.ms.toFixed(0)} ms (IDEMPOTENCY_WAIT_MS ${IDEMPOTENCY_WAIT_MS}): ${retry.body.slice(0, 100)}`)
    assert.equal(retry.headers.get('location'), `/infer/${k}`)
    assert.ok(['queued', 'running'].includes(JSON.parse(retry.body).status), retry.body)
    assert.ok(retry.ms < allow(500), `a retry that prefers respond-async waited ${retry.ms.toFixed(0)} ms on the ${names[i]}`)
  })
})

test('a long poll returns as soon as the result is stored, on the accepting instance and on its peer', async (t) => {
  const k = key('longpoll')
  const accepted = await post(a, '/v2/models/spin/infer', spinBody(spinIterations(1000)), { 'idempotency-key': k, prefer: 'respond-async' })
  assert.equal(accepted.status, 202, accepted.body)
  const [onA, onB] = await Promise.all([poll(a, `/infer/${k}?wait=60000`), poll(b, `/infer/${k}?wait=60000`)])
  t.diagnostic(`long polls answered after ${onA.ms.toFixed(0)} ms (accepting instance) and ${onB.ms.toFixed(0)} ms (peer); the bound is ${MAX_POLL_WAIT_MS} ms`)
  assert.equal(onA.status, 200, onA.body)
  assert.equal(onB.status, 200, onB.body)
  assert.equal(onA.body, onB.body)
  assert.ok(onA.ms < MAX_POLL_WAIT_MS - 500, `the poll on the accepting instance took ${onA.ms.toFixed(0)} ms`)
  assert.ok(Math.abs(onA.at - onB.at) < allow(250), `the peer's poll answered ${(onB.at - onA.at).toFixed(0)} ms after the accepting instance's`)
})

test('a long poll wakes within milliseconds of a completion stored by another instance', async (t) => {
  const id = await peerPending('wake')
  const polls = Promise.all([poll(a, `/infer/${id}?wait=10000`), poll(b, `/infer/${id}?wait=10000`)])
  await sleep(500)
  const completedAt = performance.now()
  await peerComplete(id, 'the peer')
  const answers = await polls
  for (const answer of answers) {
    const lag = answer.at - completedAt
    t.diagnostic(`poll answered ${lag.toFixed(0)} ms after the peer stored the result`)
    assert.equal(answer.status, 200, answer.body)
    assert.deepEqual(JSON.parse(answer.body), { answeredBy: 'the peer' })
    assert.match(answer.headers.get('content-type') ?? '', /^application\/json/)
    assert.ok(answer.ms >= 450, 'the poll was held open until the result existed')
    assert.ok(lag < allow(200), `the poll answered ${lag.toFixed(0)} ms after the completion`)
  }
})

test('wait is bounded by MAX_POLL_WAIT_MS; no wait or wait=0 answers at once', async (t) => {
  const id = await peerPending('bound')
  t.after(() => peerComplete(id, 'cleanup'))
  for (const path of [`/infer/${id}`, `/infer/${id}?wait=0`]) {
    const now = await poll(b, path)
    assert.equal(now.status, 202, now.body)
    assert.equal(JSON.parse(now.body).status, 'queued')
    assert.ok(now.ms < allow(300), `${path} took ${now.ms.toFixed(0)} ms`)
  }
  const bounded = await poll(a, `/infer/${id}?wait=600000`)
  t.diagnostic(`wait=600000 answered after ${bounded.ms.toFixed(0)} ms (MAX_POLL_WAIT_MS ${MAX_POLL_WAIT_MS})`)
  assert.equal(bounded.status, 202, bounded.body)
  assert.deepEqual(JSON.parse(bounded.body), { id, status: 'queued' })
  assert.ok(bounded.ms >= MAX_POLL_WAIT_MS - 100 && bounded.ms < MAX_POLL_WAIT_MS + allow(1000), `wait=600000 answered after ${bounded.ms.toFixed(0)} ms`)
})

test('an unknown id is 404 at once, with or without wait', async () => {
  for (const path of ['/infer/no-such-request', `/infer/${key('unknown')}?wait=5000`]) {
    for (const gateway of [a, b]) {
      const answer = await poll(gateway, path)
      assert.equal(answer.status, 404, `${path}: ${answer.body}`)
      assert.ok(typeof JSON.parse(answer.body).error === 'string')
      assert.ok(answer.ms < allow(500), `${path} took ${answer.ms.toFixed(0)} ms`)
    }
  }
})

test('a malformed wait is refused with 400', async () => {
  const id = await peerPending('malformed')
  try {
    for (const wait of ['abc', '-1', '1.5', '1e3', '', '%20', '0x10', '10ms']) {
      const answer = await poll(a, `/infer/${id}?wait=${wait}`)
      assert.equal(answer.status, 400, `wait=${wait}: ${answer.status} ${answer.body}`)
      assert.match(JSON.parse(answer.body).error, /wait/)
    }
  } finally {
    await peerComplete(id, 'cleanup')
  }
})
