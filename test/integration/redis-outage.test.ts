import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { fileCleanup } from '../helpers/app.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { startLoad, tally, type LoadSample } from '../helpers/load.js'
import { makeRepository } from '../helpers/model-repo.js'
import { RedisServer } from '../helpers/redis-server.js'
import { classifierBody } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'
import { readJournal } from '../../scripts/lib/journal-records.js'
import { waitUntil } from '../../scripts/lib/process.js'

// Issue 3, "Redis failures": when Redis is gone, hung or slow, the gateway answers
// 503 with Retry-After (never a hang, never an unjournaled accept), readiness
// follows within a second, and traffic recovers without a restart. Two real
// gateways share one real redis-server that the tests kill, stop and slow down.

const COMMAND_TIMEOUT_MS = 300
const CLIENT_TIMEOUT_MS = 2500
const NAMESPACE = `outage-${randomUUID().slice(0, 8)}`
const BODY = classifierBody(1)

let redis: RedisServer
let a: GatewayProcess
let b: GatewayProcess
let modelDir: string
const fileScope = fileCleanup()

function gatewayEnv (instance: string, redisUrl: string, namespace = NAMESPACE): Record<string, string> {
  return {
    MODEL_REPOSITORY: modelDir,
    REDIS_URL: redisUrl,
    JOURNAL_NAMESPACE: namespace,
    INSTANCE_ID: instance,
    REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
    IDEMPOTENCY_WAIT_MS: '1000',
    // Error logs are expected during an outage; keep the test output to what matters.
    LOG_LEVEL: 'fatal'
  }
}

before(async () => {
  redis = await RedisServer.start()
  const repo = await makeRepository(['classifier'])
  fileScope.add(repo.cleanup)
  modelDir = repo.dir
  ;[a, b] = await Promise.all([
    GatewayProcess.start(fileScope, { env: gatewayEnv('outage-a', redis.url) }),
    GatewayProcess.start(fileScope, { env: gatewayEnv('outage-b', redis.url) })
  ])
  await Promise.all([a.waitReady(), b.waitReady()])
})

after(async () => {
  await fileScope.runAll()
  await redis?.stop()
})

interface ReadinessSample { readonly at: number, readonly status: number | 'error' }

/** Polls /health/ready of `gateway` every 25 ms on the load's clock until stopped. */
function watchReadiness (gateway: GatewayProcess, origin: number): { samples: ReadinessSample[], stop: () => Promise<void> } {
  const samples: ReadinessSample[] = []
  let running = true
  const loop = (async () => {
    while (running) {
      try {
        const response = await fetch(`${gateway.url}/health/ready`, { signal: AbortSignal.timeout(1000) })
        await response.text()
        samples.push({ at: performance.now() - origin, status: response.status })
      } catch {
        samples.push({ at: performance.now() - origin, status: 'error' })
      }
      await sleep(25)
    }
  })()
  return { samples, stop: async () => { running = false; await loop } }
}

/** First readiness sample at or after `from` whose status is `status`. */
function firstAfter (samples: readonly ReadinessSample[], from: number, status: number): number | undefined {
  return samples.find((s) => s.at >= from && s.status === status)?.at
}

interface LoadRun {
  readonly samples: LoadSample[]
  readonly keyOf: (seq: number) => string
  /** The gateway a request was sent to, and its peer. */
  readonly sentTo: (seq: number) => GatewayProcess
  readonly peerOf: (seq: number) => GatewayProcess
  readonly readiness: ReadinessSample[]
}

/**
 * 8 clients for `durationMs`, alternating between the two gateways, each request
 * with its own Idempotency-Key, while `fault` runs on the same clock.
 */
async function loadDuring (durationMs: number, fault: (origin: number) => Promise<void>): Promise<LoadRun> {
  const prefix = `load-${randomUUID().slice(0, 8)}`
  const keyOf = (seq: number): string => `${prefix}-${seq}`
  const sentTo = (seq: number): GatewayProcess => (seq % 2 === 0 ? a : b)
  const peerOf = (seq: number): GatewayProcess => (seq % 2 === 0 ? b : a)
  const load = startLoad({
    concurrency: 8,
    durationMs,
    timeoutMs: CLIENT_TIMEOUT_MS,
    pauseMs: 20,
    send: (seq, signal) => fetch(`${sentTo(seq).url}/v2/models/classifier/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': keyOf(seq) },
      body: JSON.stringify(BODY),
      signal
    })
  })
  const readiness = watchReadiness(a, load.origin)
  // The load always runs to its end (and is awaited), even when the fault's own checks fail.
  const faulted = await fault(load.origin).then(() => undefined, (error: unknown) => ({ error }))
  const samples = await load.done
  await readiness.stop()
  if (faulted !== undefined) throw faulted.error
  return { samples, keyOf, sentTo, peerOf, readiness: readiness.samples }
}

/** Every answer is 200 or 503 with Retry-After, and none took longer than `maxMs`. */
function assertOnly200Or503 (run: LoadRun, maxMs: number): void {
  const { samples } = run
  const failures = samples.filter((s) => s.error !== undefined)
  assert.deepEqual(failures.map((s) => `#${s.seq} ${s.error ?? ''} after ${(s.endedAt - s.startedAt).toFixed(0)} ms`), [], 'no request hangs or fails at the transport level')
  const others = samples.filter((s) => s.status !== 200 && s.status !== 503)
  assert.deepEqual(others.map((s) => `#${s.seq} ${s.status ?? ''} ${s.body ?? ''}`), [], `only 200 and 503 (${JSON.stringify(tally(samples))})`)
  const bare503 = samples.filter((s) => s.status === 503 && s.headers?.get('retry-after') === null)
  assert.deepEqual(bare503.map((s) => `#${s.seq} ${s.body ?? ''}`), [], 'every 503 carries Retry-After')
  const slowest = samples.reduce((worst, s) => Math.max(worst, s.endedAt - s.startedAt), 0)
  assert.ok(slowest < maxMs, `the slowest request took ${slowest.toFixed(0)} ms (bound ${maxMs} ms)`)
}

/** state of each id's journal record (undefined: no record), read straight from Redis. */
async function journalStates (ids: readonly string[]): Promise<Map<string, string | undefined>> {
  const { records } = await readJournal(redis, NAMESPACE, ids)
  return new Map(ids.map((id) => [id, records.get(id)?.state ?? undefined]))
}

/**
 * After recovery: every request answered 200 has its result in Redis and any
 * instance serves it; every request refused with 503 is either unknown to the
 * journal or gets its answer when the client retries it on the other instance.
 */
/**
 * Every 200 has its stored answer, and every 503 can be retried to an answer. With
 * `refusalsWithdrawn` (Redis stayed reachable, only slow), a 503 also left no record: an
 * accept that timed out was taken back, so no peer runs what its client was told was refused.
 */
async function assertNothingLost (t: { diagnostic: (message: string) => void }, run: LoadRun, refusalsWithdrawn = false): Promise<void> {
  const ok = run.samples.filter((s) => s.status === 200)
  const refused = run.samples.filter((s) => s.status === 503)
  const okIds = ok.map((s) => run.keyOf(s.seq))
  // Completions that failed during the outage are stored once Redis is back.
  const deadline = Date.now() + 5000
  let notDone: string[] = []
  do {
    const states = await journalStates(okIds)
    notDone = okIds.filter((id) => states.get(id) !== 'done').map((id) => `${id}: ${states.get(id) ?? 'no record'}`)
    if (notDone.length === 0) break
    await sleep(100)
  } while (Date.now() < deadline)
  assert.deepEqual(notDone, [], `${notDone.length} of ${ok.length} requests answered 200 have no stored result`)

  // The stored answer is the one the client got, from the other instance too (a sample: the
  // last 200s before each 503 run, where a completion is most likely to have been deferred).
  const sample = ok.filter((s, i) => i % Math.max(1, Math.floor(ok.length / 20)) === 0 || refused.some((r) => Math.abs(r.startedAt - s.endedAt) < 300)).slice(0, 60)
  for (const s of sample) {
    const polled = await run.peerOf(s.seq).fetch(`/infer/${run.keyOf(s.seq)}`)
    assert.equal(polled.status, 200, `GET /infer/${run.keyOf(s.seq)} on the peer`)
    assert.equal(await polled.text(), s.body)
  }

  // A 503 means "not accepted". Where Redis applied the accept anyway (its reply was lost or
  // came after the client gave up), a retry on any instance must still get an answer.
  const refusedIds = refused.map((s) => run.keyOf(s.seq))
  const states = await journalStates(refusedIds)
  const recorded = refused.filter((s) => states.get(run.keyOf(s.seq)) !== undefined)
  const leftBehind = `${recorded.length} of those left a journal record (${recorded.map((s) => `${run.keyOf(s.seq)}: ${states.get(run.keyOf(s.seq)) ?? ''}`).slice(0, 5).join(', ')})`
  t.diagnostic(`${ok.length} answered 200, ${refused.length} refused with 503, ${leftBehind}`)
  if (refusalsWithdrawn) assert.equal(recorded.length, 0, leftBehind)
  const retried = [...recorded.slice(0, 10), ...refused.filter((s) => !recorded.includes(s)).slice(0, 5)]
  const results = await Promise.all(retried.map(async (s) => {
    const gateway = run.peerOf(s.seq)
    const id = run.keyOf(s.seq)
    const response = await gateway.post('/v2/models/classifier/infer', BODY, { headers: { 'idempotency-key': id } })
    let status = response.status
    let text = await response.text()
    // Such a record is owned by a live instance that never ran it: the fleet has to notice
    // (an orphan is handed off after some seconds) and run it. Poll, bounded.
    const deadline = performance.now() + 10_000
    while (status === 202 && performance.now() < deadline) {
      const polled = await gateway.fetch(`/infer/${id}?wait=3000`)
      status = polled.status
      text = await polled.text()
    }
    return { id, status, text, before: states.get(id) ?? 'no record' }
  }))
  const unanswered = results.filter((r) => r.status !== 200)
  assert.deepEqual(unanswered.map((r) => `${r.id} (journal state ${r.before} after the outage): ${r.status} ${r.text}`), [],
    'a request refused with 503 and retried on the other instance after recovery gets its answer')
}

test('Redis killed under load: only 200 or 503 with Retry-After, readiness follows, traffic recovers without a restart, no 200 is lost', async (t) => {
  let killedAt = 0
  let restartedAt = 0
  const run = await loadDuring(4500, async (origin) => {
    await sleep(1000)
    killedAt = performance.now() - origin
    await redis.kill()
    await sleep(1200)
    await redis.restart()
    restartedAt = performance.now() - origin
  })
  t.diagnostic(`outcomes ${JSON.stringify(tally(run.samples))}; killed at ${killedAt.toFixed(0)} ms, restarted at ${restartedAt.toFixed(0)} ms`)
  assertOnly200Or503(run, 2000)

  const unready = firstAfter(run.readiness, killedAt, 503)
  assert.ok(unready !== undefined && unready - killedAt < allow(1000), `readiness turned 503 ${unready === undefined ? 'never' : `${(unready - killedAt).toFixed(0)} ms`} after the kill`)
  const readyAgain = firstAfter(run.readiness, restartedAt, 200)
  assert.ok(readyAgain !== undefined && readyAgain - restartedAt < allow(2000), `readiness back to 200 ${readyAgain === undefined ? 'never' : `${(readyAgain - restartedAt).toFixed(0)} ms`} after the restart`)
  t.diagnostic(`readiness 503 after ${(unready - killedAt).toFixed(0)} ms, 200 again ${(readyAgain - restartedAt).toFixed(0)} ms after the restart`)

  assert.ok(run.samples.some((s) => s.status === 503 && s.startedAt > killedAt && s.endedAt < restartedAt), 'requests during the outage were refused')
  assert.ok(run.samples.some((s) => s.status === 200 && s.startedAt < killedAt), 'traffic was served before the kill')
  const late = run.samples.filter((s) => s.startedAt > readyAgain + 800)
  assert.ok(late.length > 0 && late.every((s) => s.status === 200), `traffic after recovery: ${JSON.stringify(tally(late))}`)
  for (const gateway of [a, b]) assert.equal((await gateway.fetch('/health/ready')).status, 200)
  assert.equal(a.exitStatus, undefined, 'the gateway was not restarted')
  assert.equal(b.exitStatus, undefined, 'the gateway was not restarted')

  await assertNothingLost(t, run)
})

test('a hung Redis (SIGSTOP): 503 within the command timeout, readiness 503, recovery after SIGCONT', async (t) => {
  let pausedAt = 0
  let resumedAt = 0
  let statusPoll: { status: number, retryAfter: string | null, body: string, ms: number } | undefined
  const run = await loadDuring(4000, async (origin) => {
    await sleep(700)
    pausedAt = performance.now() - origin
    redis.pause()
    try {
      // A read of a request's status (GET /infer/{id}?wait=) is refused as fast as a write.
      const started = performance.now()
      const polled = await a.fetch('/infer/some-id?wait=5000')
      statusPoll = { status: polled.status, retryAfter: polled.headers.get('retry-after'), body: await polled.text(), ms: performance.now() - started }
      await sleep(1500 - (performance.now() - origin - pausedAt))
    } finally {
      redis.resume()
    }
    resumedAt = performance.now() - origin
  })
  t.diagnostic(`outcomes ${JSON.stringify(tally(run.samples))}; paused at ${pausedAt.toFixed(0)} ms, resumed at ${resumedAt.toFixed(0)} ms`)
  assertOnly200Or503(run, COMMAND_TIMEOUT_MS + 700)

  const unready = firstAfter(run.readiness, pausedAt, 503)
  assert.ok(unready !== undefined && unready - pausedAt < allow(1200), `readiness turned 503 ${unready === undefined ? 'never' : `${(unready - pausedAt).toFixed(0)} ms`} after SIGSTOP`)
  const readyAgain = firstAfter(run.readiness, resumedAt, 200)
  assert.ok(readyAgain !== undefined && readyAgain - resumedAt < allow(2000), `readiness back ${readyAgain === undefined ? 'never' : `${(readyAgain - resumedAt).toFixed(0)} ms`} after SIGCONT`)
  t.diagnostic(`readiness 503 after ${(unready - pausedAt).toFixed(0)} ms, 200 again ${(readyAgain - resumedAt).toFixed(0)} ms after SIGCONT`)
  assert.ok(run.samples.some((s) => s.status === 503 && s.startedAt > pausedAt && s.endedAt < resumedAt), 'requests to a hung Redis were refused')
  const late = run.samples.filter((s) => s.startedAt > readyAgain + 800)
  assert.ok(late.length > 0 && late.every((s) => s.status === 200), `traffic after recovery: ${JSON.stringify(tally(late))}`)

  await assertNothingLost(t, run, true)

  assert.ok(statusPoll !== undefined)
  assert.equal(statusPoll.status, 503, `GET /infer/{id}?wait= against a hung Redis: ${statusPoll.status} ${statusPoll.body}`)
  assert.ok(statusPoll.retryAfter !== null, 'the 503 carries Retry-After')
  assert.ok(statusPoll.ms < COMMAND_TIMEOUT_MS + 700, `GET /infer/{id} against a hung Redis took ${statusPoll.ms.toFixed(0)} ms`)
})

test('a slow Redis (DEBUG SLEEP 2) gives 503s, not hangs, and traffic recovers', async (t) => {
  const admin = redis.client()
  t.after(() => admin.disconnect())
  let sleptAt = 0
  let wokeAt = 0
  const run = await loadDuring(4500, async (origin) => {
    await sleep(700)
    sleptAt = performance.now() - origin
    await admin.call('DEBUG', 'SLEEP', '2')
    wokeAt = performance.now() - origin
  })
  t.diagnostic(`outcomes ${JSON.stringify(tally(run.samples))}; Redis slept from ${sleptAt.toFixed(0)} to ${wokeAt.toFixed(0)} ms`)
  assert.ok(wokeAt - sleptAt >= 1900, 'DEBUG SLEEP blocked Redis')
  assertOnly200Or503(run, COMMAND_TIMEOUT_MS + 700)
  const unready = firstAfter(run.readiness, sleptAt, 503)
  assert.ok(unready !== undefined && unready < wokeAt, 'readiness turned 503 while Redis was unresponsive')
  assert.ok(run.samples.some((s) => s.status === 503 && s.startedAt > sleptAt && s.endedAt < wokeAt), 'requests to a sleeping Redis were refused')
  const late = run.samples.filter((s) => s.startedAt > wokeAt + 1000)
  assert.ok(late.length > 0 && late.every((s) => s.status === 200), `traffic after recovery: ${JSON.stringify(tally(late))}`)

  await assertNothingLost(t, run, true)
})

test('REDIS_URL with a password and a database number: the gateway becomes ready and journals there', async (t) => {
  const own = await RedisServer.start()
  t.after(() => own.stop())
  // The helper's start-up probe has no password, so the password is set once the server runs.
  const password = 'p@ss:w/rd %1'
  const setup = own.client()
  await setup.config('SET', 'requirepass', password)
  setup.disconnect()
  const encoded = encodeURIComponent(password)
  const namespace = `url-${randomUUID().slice(0, 8)}`
  const client = new Redis({ host: '127.0.0.1', port: own.port, password, lazyConnect: true })
  t.after(() => client.disconnect())
  await client.connect()

  for (const [label, url, db] of [
    ['password only, db 3', `redis://:${encoded}@127.0.0.1:${own.port}/3`, 3],
    ['user "default" and password, db 5', `redis://default:${encoded}@127.0.0.1:${own.port}/5`, 5]
  ] as const) {
    const gateway = await GatewayProcess.start(t, { env: gatewayEnv(`url-${db}`, url, namespace) })
    await gateway.waitReady(10_000).catch((error: Error) => { throw new Error(`${label}: ${error.message}`) })
    const id = `url-${db}-${randomUUID()}`
    const answer = await gateway.post('/v2/models/classifier/infer', BODY, { headers: { 'idempotency-key': id } })
    assert.equal(answer.status, 200, `${label}: ${await answer.text()}`)
    await client.select(db)
    const inDb = (await client.keys(`*${namespace}*`)).filter((k) => k.endsWith(id))
    assert.equal(inDb.length, 1, `${label}: the request is journaled in database ${db}`)
    // The answer is stored right after it is sent (design: the completion may follow the answer).
    assert.ok(await waitUntil(async () => await client.getrange(inDb[0], 0, 0) === 'F', 2000, 20), `${label}: its answer is stored`)
    await client.select(0)
    assert.deepEqual((await client.keys(`*${namespace}*`)).filter((k) => k.endsWith(id)), [], `${label}: nothing in database 0`)
    await gateway.kill()
  }

  const wrong = await GatewayProcess.start(t, { env: gatewayEnv('url-wrong', `redis://:wrong@127.0.0.1:${own.port}/3`, namespace) })
  await sleep(1500)
  const ready = await wrong.fetch('/health/ready')
  assert.equal(ready.status, 503, 'a wrong password is not ready')
  assert.match(await ready.text(), /journal|redis/i)
  const refused = await wrong.post('/v2/models/classifier/infer', BODY)
  assert.equal(refused.status, 503, await refused.text())
  assert.ok(refused.headers.get('retry-after') !== null)
})
