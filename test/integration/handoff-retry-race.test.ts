import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfig } from '../../src/config.js'
import { encodePendingRecord } from '../../src/journal/record.js'
import type { AcceptEntry, AcceptResult, Journal } from '../../src/journal/journal.js'
import { createInstance } from '../../src/instance.js'
import { makeRepository } from '../helpers/model-repo.js'
import { startRedis, namespace } from '../helpers/fleet.js'
import { classifierBody } from '../helpers/requests.js'
import { decodeRequestBody } from '../../src/http/v2-json.js'
import { redisJournal } from '../helpers/redis-journal.js'
import { reconcileAfterMs, reconcileIntervalMs } from '../../src/journal/lease-keeper.js'
import { Redis } from 'ioredis'

// A request handed off by a draining instance, retried (same Idempotency-Key) on the
// peer that is about to replay it: the retry's accept is still in flight when the
// peer's replay consumer reads the hand-off entry. The entry may only be dropped by
// someone committed to completing the request, so the request must still be answered.

const redis = await startRedis(after)
const repo = await makeRepository(['classifier'])
after(repo.cleanup)

/** A journal whose accept of one id is held until `release()`: the retry's accept, in flight. */
function holdingAccept (inner: Journal, heldId: string) {
  let release!: () => void
  const released = new Promise<void>((resolve) => { release = resolve })
  let reached!: () => void
  const acceptReached = new Promise<void>((resolve) => { reached = resolve })
  const journal = new Proxy(inner, {
    get (target, property, receiver) {
      if (property === 'accept') {
        return async (entry: AcceptEntry): Promise<AcceptResult> => {
          if (entry.id === heldId) {
            reached()
            await released
          }
          return target.accept(entry)
        }
      }
      const value: unknown = Reflect.get(target, property, receiver)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    }
  })
  return { journal, release, acceptReached }
}

/** A peer instance's configuration, on the test's Redis and namespace. */
function peerConfig (ns: string, extra: Record<string, string> = {}) {
  return loadConfig({
    LOG_LEVEL: 'silent',
    MODEL_INSTANCES: '1',
    EXECUTION_PROVIDERS: 'cpu',
    PREEMPTION_SOURCES: 'none',
    MODEL_REPOSITORY: repo.dir,
    REDIS_URL: redis.url,
    JOURNAL_NAMESPACE: ns,
    INSTANCE_ID: 'peer',
    LEASE_TTL_MS: '1000',
    ...extra
  }, false)
}

test('a retry accepted while the same peer claims the hand-off entry still gets its answer', async (t) => {
  const ns = namespace()
  const id = 'retry-meets-replay'
  const body = classifierBody(1, { id })

  // The draining instance: the request is journaled there and handed to the fleet.
  const { journal: drained, fleet: drainedFleet } = await redisJournal(t, redis.url, { namespace: ns, instanceId: 'drained', leaseTtlMs: 1000 })

  let held: ReturnType<typeof holdingAccept> | undefined
  const peer = await createInstance(peerConfig(ns, { IDEMPOTENCY_WAIT_MS: '200' }), {
    noticeSources: [],
    wrapJournal: (journal) => (held = holdingAccept(journal, id)).journal
  })
  t.after(() => peer.close())
  await peer.start({ replay: false })
  const model = peer.models.resolve('classifier')

  const request = { model: 'classifier', version: '2', ...decodeRequestBody(body, model.signature, model.limits) }
  const record = encodePendingRecord(request, undefined, 'drained')
  assert.deepEqual(await drained.accept({ id, fingerprint: record.fingerprint, record: record.bytes }), { accepted: true })
  await drained.handOff({ id, reason: 'drain' })

  // The load balancer's retry reaches the peer; its accept is held in flight.
  const retry = peer.app.inject({ method: 'POST', url: '/v2/models/classifier/infer', payload: body, headers: { 'idempotency-key': id } })
  await held?.acceptReached
  // Meanwhile the peer's replay consumer reads the hand-off entry.
  peer.startReplay()
  const deadline = Date.now() + 10_000
  while ((await drainedFleet.replayBacklog()) > 0 && Date.now() < deadline) await sleep(20)
  await sleep(100)
  held?.release()

  const answer = await retry
  assert.ok(answer.statusCode === 200 || answer.statusCode === 202, `the retry is answered or told to poll (${answer.statusCode} ${answer.body})`)
  const final = await drained.waitForFinal(id, 10_000)
  assert.equal(final?.state, 'done', `the handed-off request was completed (state ${final?.state ?? 'unknown'})`)
  const poll = await peer.app.inject({ method: 'GET', url: `/infer/${id}?wait=1000` })
  assert.equal(poll.statusCode, 200, poll.body)
  assert.equal(poll.json().id, id)
})

test('a hand-off whose replay entry was lost is queued again by the reconciliation and completed', async (t) => {
  const ns = namespace()
  const id = 'lost-entry'
  const leaseTtlMs = 1000
  const { journal: drained, keys } = await redisJournal(t, redis.url, { namespace: ns, instanceId: 'drained', leaseTtlMs })

  const peer = await createInstance(peerConfig(ns, { LEASE_TTL_MS: String(leaseTtlMs) }), { noticeSources: [] })
  t.after(() => peer.close())
  await peer.start({ replay: false })
  const model = peer.models.resolve('classifier')
  const request = { model: 'classifier', version: '2', ...decodeRequestBody(classifierBody(1, { id }), model.signature, model.limits) }
  const record = encodePendingRecord(request, undefined, 'drained')
  await drained.accept({ id, fingerprint: record.fingerprint, record: record.bytes })
  await drained.handOff({ id, reason: 'drain' })

  // The entry disappears without anybody having run the request (the failure the safety net exists for).
  const raw = new Redis(redis.url)
  t.after(() => raw.quit())
  const stream = keys.partitionOf(id).replayStream
  const entries = await raw.xrange(stream, '-', '+')
  assert.equal(entries.length, 1)
  await raw.xdel(stream, entries[0][0])
  const lostAt = Date.now()

  peer.startReplay()
  const final = await drained.waitForFinal(id, 8 * leaseTtlMs)
  const lateMs = Date.now() - lostAt
  assert.equal(final?.state, 'done', `the request was completed after its entry was lost (state ${final?.state ?? 'unknown'})`)
  const bound = reconcileAfterMs(leaseTtlMs) + reconcileIntervalMs(leaseTtlMs)
  assert.ok(lateMs < bound + 2 * leaseTtlMs, `re-queued within the reconciliation bound (${lateMs} ms; bound ${bound} ms plus a replay)`)
  const metrics = await peer.metrics.registry.getSingleMetricAsString('spotgate_handoffs_total')
  assert.match(metrics, /spotgate_handoffs_total\{reason="reconciled"\} 1/)
})
