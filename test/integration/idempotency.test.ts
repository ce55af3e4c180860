import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { readJournal } from '../../scripts/lib/journal-records.js'
import { waitUntil } from '../../scripts/lib/process.js'
import { journalKeys } from '../../src/journal/redis/keys.js'
import { fileCleanup } from '../helpers/app.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository } from '../helpers/model-repo.js'
import { RedisServer } from '../helpers/redis-server.js'
import { classifierBody, spinBody, spinIterations } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'

// The README's "Request identity and retries", on two real gateway processes sharing
// one real redis-server: whichever instance receives a retry gives the one stored answer.

const IDEMPOTENCY_WAIT_MS = 300
const NAMESPACE = `idem-${randomUUID().slice(0, 8)}`

let redis: RedisServer
let a: GatewayProcess
let b: GatewayProcess
let modelDir: string
const fileScope = fileCleanup()

before(async () => {
  redis = await RedisServer.start()
  const repo = await makeRepository(['classifier', 'spin'])
  fileScope.add(repo.cleanup)
  modelDir = repo.dir
  const env = (instance: string): Record<string, string> => ({
    MODEL_REPOSITORY: repo.dir,
    REDIS_URL: redis.url,
    JOURNAL_NAMESPACE: NAMESPACE,
    INSTANCE_ID: instance,
    IDEMPOTENCY_WAIT_MS: String(IDEMPOTENCY_WAIT_MS),
    REDIS_COMMAND_TIMEOUT_MS: '500',
    LOG_LEVEL: 'warn'
  })
  ;[a, b] = await Promise.all([GatewayProcess.start(fileScope, { env: env('idem-a') }), GatewayProcess.start(fileScope, { env: env('idem-b') })])
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
}

async function post (gateway: GatewayProcess, body: unknown, key: string | undefined, path = '/v2/models/classifier/infer', headers: Record<string, string> = {}): Promise<Answer> {
  const response = await gateway.post(path, body, { headers: { ...(key !== undefined && { 'idempotency-key': key }), ...headers } })
  return { status: response.status, headers: response.headers, body: await response.text() }
}

async function get (gateway: GatewayProcess, path: string): Promise<Answer> {
  const response = await gateway.fetch(path)
  return { status: response.status, headers: response.headers, body: await response.text() }
}

function key (label: string): string {
  return `${label}-${randomUUID()}`
}

/** Sums the series of one metric whose labels include `labels`, from Prometheus text. */
function metricSum (text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const found = new Map<string, string>()
    for (const pair of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) found.set(pair[1], pair[2])
    if (Object.entries(labels).every(([k, v]) => found.get(k) === v)) sum += Number(match[3])
  }
  return sum
}

/** Rows the model has run and requests answered fresh (not replayed), summed over both gateways. */
async function work (model: string): Promise<{ rows: number, fresh: number }> {
  const texts = await Promise.all([a, b].map(async (g) => (await g.fetch('/metrics')).text()))
  return {
    rows: texts.reduce((n, text) => n + metricSum(text, 'spotgate_batch_size_sum', { model }), 0),
    fresh: texts.reduce((n, text) => n + metricSum(text, 'spotgate_requests_total', { model, outcome: 'ok' }), 0)
  }
}

/** The journal record of one request, found by its id without assuming the key schema beyond "the key ends with the id". */
/** A request's journal record as the chaos harness reads it, and the TTL of its record key. */
async function journalRecord (id: string, namespace = NAMESPACE): Promise<{ state: string, attempts: number, pttl: number } | undefined> {
  const { records } = await readJournal(redis, namespace, [id])
  const record = records.get(id)
  if (record?.state == null) return undefined
  const client = redis.client()
  try {
    return { state: record.state, attempts: record.attempts, pttl: await client.pttl(journalKeys(namespace, 1).record(id)) }
  } finally {
    client.disconnect()
  }
}

test('a retry with the same key and body on the same instance gets the stored answer', async () => {
  const k = key('same')
  const first = await post(a, classifierBody(2), k)
  assert.equal(first.status, 200, first.body)
  assert.equal(first.headers.get('x-request-id'), k)
  assert.equal(first.headers.get('idempotent-replayed'), null)

  const retry = await post(a, classifierBody(2), k)
  assert.equal(retry.status, 200, retry.body)
  assert.equal(retry.headers.get('idempotent-replayed'), 'true')
  assert.equal(retry.headers.get('x-request-id'), k)
  assert.match(retry.headers.get('content-type') ?? '', /^application\/json/)
  assert.equal(retry.body, first.body)
})

test('a retry on the peer instance gets the same stored answer, and so does GET /infer/{id}', async () => {
  const k = key('peer')
  const first = await post(a, classifierBody(1, { id: 'client-echo' }), k)
  assert.equal(first.status, 200, first.body)
  assert.equal(JSON.parse(first.body).id, 'client-echo')

  const onPeer = await post(b, classifierBody(1, { id: 'client-echo' }), k)
  assert.equal(onPeer.status, 200, onPeer.body)
  assert.equal(onPeer.headers.get('idempotent-replayed'), 'true')
  assert.equal(onPeer.headers.get('x-request-id'), k)
  assert.equal(onPeer.body, first.body)

  for (const gateway of [a, b]) {
    const polled = await get(gateway, `/infer/${k}`)
    assert.equal(polled.status, 200, polled.body)
    assert.equal(polled.headers.get('x-request-id'), k)
    assert.equal(polled.body, first.body)
  }
  // The /infer route with "model" in the body is the same request as the v2 route.
  const viaInfer = await post(b, { model: 'classifier', ...classifierBody(1, { id: 'client-echo' }) }, k, '/infer')
  assert.equal(viaInfer.status, 200, viaInfer.body)
  assert.equal(viaInfer.headers.get('idempotent-replayed'), 'true')
  assert.equal(viaInfer.body, first.body)

  const record = await journalRecord(k)
  assert.equal(record?.state, 'done')
})

test('the quoted key form "abc" is the same key as the bare abc', async () => {
  const k = key('quoted')
  const quoted = await post(a, classifierBody(1), `"${k}"`)
  assert.equal(quoted.status, 200, quoted.body)
  assert.equal(quoted.headers.get('x-request-id'), k)
  assert.equal(quoted.headers.get('idempotent-replayed'), null)

  const bare = await post(b, classifierBody(1), k)
  assert.equal(bare.status, 200, bare.body)
  assert.equal(bare.headers.get('idempotent-replayed'), 'true')
  assert.equal(bare.headers.get('x-request-id'), k)
  assert.equal(bare.body, quoted.body)

  const quotedAgain = await post(a, classifierBody(1), `"${k}"`)
  assert.equal(quotedAgain.headers.get('idempotent-replayed'), 'true')
  assert.equal(quotedAgain.body, quoted.body)
})

test('keys of 1 and of 255 characters from the allowed set are accepted', async () => {
  for (const k of ['z', `A-z_0.9:${randomUUID()}`.padEnd(255, 'k')]) {
    const answer = await post(a, classifierBody(1), k)
    assert.equal(answer.status, 200, `${k.length} chars: ${answer.body}`)
    assert.equal(answer.headers.get('x-request-id'), k)
    // The completion may be stored just after the answer: the peer waits for it.
    const polled = await get(b, `/infer/${k}?wait=5000`)
    assert.equal(polled.status, 200, `${k.length} chars, polled on the peer: ${polled.body}`)
  }
})

test('malformed keys are refused with 400 and nothing is run', async () => {
  const before = await work('classifier')
  const bad = ['', '   ', '""', 'k'.repeat(256), `"${'k'.repeat(256)}"`, 'has space', 'a/b', '../etc', 'semi;colon', 'quote"inside', '"unterminated', 'comma,separated']
  for (const k of bad) {
    const answer = await post(a, classifierBody(1), k)
    assert.equal(answer.status, 400, `key ${JSON.stringify(k)}: ${answer.status} ${answer.body}`)
    assert.match(JSON.parse(answer.body).error, /Idempotency-Key/)
  }
  const viaInfer = await post(b, { model: 'classifier', ...classifierBody(1) }, 'a/b', '/infer')
  assert.equal(viaInfer.status, 400)
  assert.match(JSON.parse(viaInfer.body).error, /Idempotency-Key/)
  const after = await work('classifier')
  assert.equal(after.rows, before.rows, 'a request with a bad key never reached the model')
})

test('the same key with another body is refused with 422 on either instance', async () => {
  const k = key('conflict')
  const first = await post(a, classifierBody(1), k)
  assert.equal(first.status, 200, first.body)

  const otherData = classifierBody(1)
  otherData.inputs[0].data[0] = 42
  const otherRows = classifierBody(2)
  const otherVersion = classifierBody(1)
  for (const [gateway, body, path] of [
    [a, otherData, '/v2/models/classifier/infer'],
    [b, otherData, '/v2/models/classifier/infer'],
    [b, otherRows, '/v2/models/classifier/infer'],
    [a, otherVersion, '/v2/models/classifier/versions/1/infer']
  ] as const) {
    const answer = await post(gateway, body, k, path)
    assert.equal(answer.status, 422, `${path} on ${gateway === a ? 'a' : 'b'}: ${answer.body}`)
    assert.equal(answer.headers.get('x-request-id'), k)
    assert.match(JSON.parse(answer.body).error, new RegExp(k))
  }
  // The refused bodies changed nothing: the original still replays.
  const retry = await post(b, classifierBody(1), k)
  assert.equal(retry.status, 200)
  assert.equal(retry.body, first.body)
})

// A gateway starts a request's run while its accept is on the way to Redis, so duplicates
// that reach two gateways within one journal round trip may be computed on both: the
// gateway whose accept lost discards its result. Every client still gets the one answer
// the journal stored, and only that one counts as an answer.
test('concurrent duplicates racing for one key, split over both gateways, all get one answer, the one stored', async () => {
  const rounds: Array<{ model: 'classifier' | 'spin', body: unknown }> = [
    { model: 'classifier', body: classifierBody(3) },
    { model: 'classifier', body: classifierBody(1) },
    { model: 'spin', body: spinBody(spinIterations(50)) }
  ]
  // The warm-up at start-up runs zero iterations; a model's first real run is slower, and a
  // run longer than IDEMPOTENCY_WAIT_MS would (rightly) answer the duplicates 202.
  await Promise.all([a, b].map(async (g) => (await post(g, spinBody(spinIterations(50)), undefined, '/v2/models/spin/infer')).status))
  for (const { model, body } of rounds) {
    const k = key(`race-${model}`)
    const before = await work(model)
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => post(i % 2 === 0 ? a : b, body, k, `/v2/models/${model}/infer`)))
    const statuses = answers.map((x) => x.status)
    assert.deepEqual(statuses, new Array(10).fill(200), answers.map((x) => `${x.status} ${x.body}`).join('\n'))
    for (const answer of answers) {
      assert.equal(answer.body, answers[0].body)
      assert.equal(answer.headers.get('x-request-id'), k)
    }
    const fresh = answers.filter((x) => x.headers.get('idempotent-replayed') !== 'true')
    assert.equal(fresh.length, 1, 'exactly one answer is the original, the others are replays')
    const afterRace = await work(model)
    const rows = model === 'classifier' ? ((body as ReturnType<typeof classifierBody>).inputs[0].shape[0]) : 1
    const runs = (afterRace.rows - before.rows) / rows
    assert.ok(Number.isInteger(runs) && runs >= 1 && runs <= answers.length, `the ${model} model ran the request ${runs} times (rows ${before.rows} → ${afterRace.rows})`)
    assert.equal(afterRace.fresh - before.fresh, 1, 'one request counted as a fresh answer')
    const record = await journalRecord(k)
    assert.equal(record?.state, 'done')
    assert.equal(record?.attempts, 0, 'never replayed')
  }
})

test('a duplicate of a request still running gets 202 with Location, and the peer serves the answer once done', async () => {
  const k = key('inflight')
  const body = spinBody(spinIterations(1500))
  const started = performance.now()
  const original = post(a, body, k, '/v2/models/spin/infer').then((answer) => ({ ...answer, at: performance.now() }))
  await sleep(150)

  for (const gateway of [b, a]) {
    const sent = performance.now()
    const dup = await post(gateway, body, k, '/v2/models/spin/infer')
    const waited = performance.now() - sent
    const name = gateway === a ? 'a' : 'b'
    assert.equal(dup.status, 202, `duplicate on ${name}: ${dup.status} ${dup.body}`)
    assert.equal(dup.headers.get('location'), `/infer/${k}`)
    assert.equal(dup.headers.get('x-request-id'), k)
    assert.ok(dup.headers.get('retry-after') !== null, 'a 202 says when to poll')
    const status = JSON.parse(dup.body) as { status: string, id: string }
    assert.ok(['queued', 'running'].includes(status.status), dup.body)
    assert.equal(status.id, k)
    assert.ok(waited >= IDEMPOTENCY_WAIT_MS - 50 && waited < IDEMPOTENCY_WAIT_MS + allow(700), `the duplicate on ${name} waited ${waited.toFixed(0)} ms (IDEMPOTENCY_WAIT_MS ${IDEMPOTENCY_WAIT_MS})`)
  }
  assert.ok(performance.now() - started < allow(1200), 'the duplicates were answered while the original was still running')

  const polled = await get(b, `/infer/${k}?wait=10000`)
  const first = await original
  assert.equal(first.status, 200, first.body)
  assert.equal(polled.status, 200, polled.body)
  assert.equal(polled.body, first.body)
  const again = await post(b, body, k, '/v2/models/spin/infer')
  assert.equal(again.status, 200)
  assert.equal(again.headers.get('idempotent-replayed'), 'true')
  assert.equal(again.body, first.body)
})

test('with RESULT_TTL_S=1 the result and the key expire: 404, the Redis keys are gone, and the key can be reused', async (t) => {
  const namespace = `ttl-${randomUUID().slice(0, 8)}`
  const gateway = await GatewayProcess.start(t, {
    env: { MODEL_REPOSITORY: modelDir, REDIS_URL: redis.url, JOURNAL_NAMESPACE: namespace, INSTANCE_ID: 'idem-ttl', RESULT_TTL_S: '1', LOG_LEVEL: 'warn' }
  })
  await gateway.waitReady()
  const k = key('ttl')
  const first = await post(gateway, classifierBody(1), k)
  assert.equal(first.status, 200, first.body)
  // The completion record may land just after the answer (README, "The journal and the guarantee").
  let record = await journalRecord(k, namespace)
  await waitUntil(async () => (record = await journalRecord(k, namespace))?.state === 'done', 1_000, 10)
  assert.ok(record !== undefined, 'the request is journaled')
  assert.equal(record.state, 'done')
  assert.ok(record.pttl > 0 && record.pttl <= 1000, `request key TTL ${record.pttl} ms`)

  assert.equal((await get(gateway, `/infer/${k}`)).status, 200)
  await sleep(2000)
  const expired = await get(gateway, `/infer/${k}`)
  assert.equal(expired.status, 404, expired.body)
  assert.equal(await journalRecord(k, namespace), undefined, 'the request key is gone from Redis')

  const otherBody = classifierBody(2)
  const reused = await post(gateway, otherBody, k)
  assert.equal(reused.status, 200, `an expired key is free again: ${reused.body}`)
  assert.equal(reused.headers.get('idempotent-replayed'), null)
})

test('every key the journal writes has a TTL, from the first request a fresh gateway accepts', async (t) => {
  const namespace = `keys-${randomUUID().slice(0, 8)}`
  const gateway = await GatewayProcess.start(t, {
    env: { MODEL_REPOSITORY: modelDir, REDIS_URL: redis.url, JOURNAL_NAMESPACE: namespace, INSTANCE_ID: 'idem-keys', LOG_LEVEL: 'warn' }
  })
  await gateway.waitReady()
  const answer = await post(gateway, classifierBody(1), key('keys'))
  assert.equal(answer.status, 200, answer.body)
  const client = redis.client()
  t.after(() => client.disconnect())
  const names = await client.keys(`*${namespace}*`)
  assert.ok(names.length > 0)
  const immortal: string[] = []
  for (const name of names) {
    // -2: gone since it was listed (an owned set empties when its last request completes).
    const pttl = await client.pttl(name)
    if (pttl === -1) immortal.push(`${name} (PTTL ${pttl})`)
  }
  // A gateway killed now must not leave keys behind forever (issue 3, "every key has a TTL").
  assert.deepEqual(immortal, [], `keys without a TTL: ${immortal.join(', ')}`)
})
