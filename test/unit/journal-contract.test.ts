import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { EmbeddedJournal } from '../../src/journal/embedded-journal.js'
import { JournalUnavailableError, type AcceptEntry, type Journal, type StoredResponse } from '../../src/journal/journal.js'
import { RedisJournal } from '../../src/journal/redis-journal.js'
import { createMetrics } from '../../src/metrics.js'
import type { Cleanup } from '../helpers/app.js'
import { RedisServer } from '../helpers/redis-server.js'

// One contract (design.md §3-4, src/journal/journal.ts), two implementations: every
// test in `contract` runs against the in-process journal and against RedisJournal on
// a real redis-server. Redis-only behaviour (peers, key TTLs, outages) follows.

const INSTANCE = 'contract-a'

interface MakeOptions {
  readonly resultTtlSeconds?: number
  readonly instanceId?: string
  /** Redis only: share a namespace between two journals (peers). */
  readonly namespace?: string
}

type Make = (t: Cleanup, options?: MakeOptions) => Promise<Journal>

function entry (id: string, fingerprint = 'fp-a', payload: Buffer = Buffer.from(`payload of ${id}`)): AcceptEntry {
  return { id, fingerprint, model: 'classifier', version: '2', payload }
}

function response (text: string, statusCode = 200): StoredResponse {
  return { statusCode, contentType: 'application/json; charset=utf-8', body: Buffer.from(JSON.stringify({ text })) }
}

function uniqueId (label: string): string {
  return `${label}-${randomUUID()}`
}

async function waitAvailable (journal: Journal, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (journal.unavailableReason() !== undefined) {
    if (Date.now() > deadline) throw new Error(`journal not available within ${timeoutMs} ms: ${journal.unavailableReason() ?? ''}`)
    await sleep(20)
  }
}

function contract (make: Make): void {
  test('accepts a new request as queued, owned by this instance', async (t) => {
    const journal = await make(t)
    const id = uniqueId('new')
    assert.deepEqual(await journal.accept(entry(id)), { accepted: true })
    const view = await journal.get(id)
    assert.equal(view?.id, id)
    assert.equal(view?.state, 'queued')
    assert.equal(view?.owner, INSTANCE)
    assert.equal(view?.response, undefined)
  })

  test('a duplicate with the same fingerprint is not accepted again and reports the same body', async (t) => {
    const journal = await make(t)
    const id = uniqueId('dup')
    await journal.accept(entry(id))
    const again = await journal.accept(entry(id))
    assert.equal(again.accepted, false)
    assert.ok(!again.accepted)
    assert.equal(again.sameBody, true)
    assert.equal(again.existing.state, 'queued')
    assert.equal(again.existing.owner, INSTANCE)
  })

  test('a duplicate with another fingerprint reports a different body', async (t) => {
    const journal = await make(t)
    const id = uniqueId('other')
    await journal.accept(entry(id, 'fp-a'))
    const again = await journal.accept(entry(id, 'fp-b'))
    assert.ok(!again.accepted)
    assert.equal(again.sameBody, false)
    assert.equal((await journal.get(id))?.state, 'queued', 'the refused duplicate changes nothing')
  })

  test('concurrent accepts of one id accept exactly one', async (t) => {
    const journal = await make(t)
    const id = uniqueId('race')
    const results = await Promise.all(Array.from({ length: 10 }, () => journal.accept(entry(id))))
    assert.equal(results.filter((r) => r.accepted).length, 1, JSON.stringify(results))
    for (const result of results) if (!result.accepted) assert.equal(result.sameBody, true)
  })

  test('get of an unknown id is undefined', async (t) => {
    const journal = await make(t)
    assert.equal(await journal.get(uniqueId('unknown')), undefined)
  })

  test('complete stores the response, and the first completion wins', async (t) => {
    const journal = await make(t)
    const id = uniqueId('complete')
    await journal.accept(entry(id))
    await journal.complete({ id, state: 'done', response: response('first') })
    await journal.complete({ id, state: 'failed', response: response('second', 500) })
    const view = await journal.get(id)
    assert.equal(view?.state, 'done')
    assert.equal(view?.response?.statusCode, 200)
    assert.equal(view?.response?.contentType, 'application/json; charset=utf-8')
    assert.deepEqual(JSON.parse(String(view?.response?.body)), { text: 'first' })
  })

  test('a failed completion is final and keeps its error response', async (t) => {
    const journal = await make(t)
    const id = uniqueId('failed')
    await journal.accept(entry(id))
    await journal.complete({ id, state: 'failed', response: response('boom', 500) })
    await journal.complete({ id, state: 'done', response: response('late') })
    const view = await journal.get(id)
    assert.equal(view?.state, 'failed')
    assert.equal(view?.response?.statusCode, 500)
    assert.deepEqual(JSON.parse(String(view?.response?.body)), { text: 'boom' })
  })

  test('accepting a completed id returns the stored answer', async (t) => {
    const journal = await make(t)
    const id = uniqueId('replay')
    await journal.accept(entry(id))
    await journal.complete({ id, state: 'done', response: response('stored') })
    const again = await journal.accept(entry(id))
    assert.ok(!again.accepted)
    assert.equal(again.sameBody, true)
    assert.equal(again.existing.state, 'done')
    assert.deepEqual(JSON.parse(String(again.existing.response?.body)), { text: 'stored' })
    const other = await journal.accept(entry(id, 'fp-other'))
    assert.ok(!other.accepted)
    assert.equal(other.sameBody, false)
  })

  test('complete of an id that was never accepted stores nothing', async (t) => {
    const journal = await make(t)
    const id = uniqueId('never')
    await journal.complete({ id, state: 'done', response: response('orphan') })
    assert.equal(await journal.get(id), undefined)
    assert.deepEqual(await journal.accept(entry(id)), { accepted: true })
  })

  test('waitForFinal is woken by the completion, not by its timeout', async (t) => {
    const journal = await make(t)
    const id = uniqueId('wake')
    await journal.accept(entry(id))
    const waiting = journal.waitForFinal(id, 5000).then((view) => ({ view, at: performance.now() }))
    await sleep(200)
    const completedAt = performance.now()
    await journal.complete({ id, state: 'done', response: response('woken') })
    const { view, at } = await waiting
    const lag = at - completedAt
    t.diagnostic(`waiter returned ${lag.toFixed(1)} ms after the completion`)
    assert.equal(view?.state, 'done')
    assert.deepEqual(JSON.parse(String(view?.response?.body)), { text: 'woken' })
    assert.ok(lag < 150, `waitForFinal returned ${lag.toFixed(0)} ms after complete`)
  })

  test('several waiters of one id are all woken', async (t) => {
    const journal = await make(t)
    const id = uniqueId('waiters')
    await journal.accept(entry(id))
    const started = performance.now()
    const waiting = Promise.all(Array.from({ length: 3 }, () => journal.waitForFinal(id, 5000)))
    await sleep(150)
    await journal.complete({ id, state: 'done', response: response('all') })
    const views = await waiting
    assert.ok(performance.now() - started < 1500)
    for (const view of views) assert.equal(view?.state, 'done')
  })

  test('waitForFinal of a pending request returns its pending view when the timeout passes', async (t) => {
    const journal = await make(t)
    const id = uniqueId('timeout')
    await journal.accept(entry(id))
    const started = performance.now()
    const view = await journal.waitForFinal(id, 300)
    const elapsed = performance.now() - started
    assert.equal(view?.state, 'queued')
    assert.ok(elapsed >= 280 && elapsed < 1000, `waited ${elapsed.toFixed(0)} ms for a 300 ms bound`)
  })

  test('waitForFinal returns at once for a final request, an unknown id or a zero timeout', async (t) => {
    const journal = await make(t)
    const done = uniqueId('final')
    const pending = uniqueId('pending')
    await journal.accept(entry(done))
    await journal.accept(entry(pending))
    await journal.complete({ id: done, state: 'done', response: response('x') })
    const started = performance.now()
    assert.equal((await journal.waitForFinal(done, 5000))?.state, 'done')
    assert.equal(await journal.waitForFinal(uniqueId('unknown'), 5000), undefined)
    assert.equal((await journal.waitForFinal(pending, 0))?.state, 'queued')
    const elapsed = performance.now() - started
    assert.ok(elapsed < 500, `took ${elapsed.toFixed(0)} ms`)
  })

  test('payload returns the canonical bytes unchanged until the request is final', async (t) => {
    const journal = await make(t)
    const id = uniqueId('payload')
    // Every byte value, zeros and invalid UTF-8 included, in a payload the size of a real tensor.
    const bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(256 * 1024), Buffer.alloc(16)])
    await journal.accept(entry(id, 'fp-a', bytes))
    const stored = await journal.payload(id)
    assert.ok(stored !== undefined)
    assert.equal(stored.length, bytes.length)
    assert.ok(stored.equals(bytes), 'payload bytes differ')
    await journal.complete({ id, state: 'done', response: response('x') })
    assert.equal(await journal.payload(id), undefined)
    assert.equal(await journal.payload(uniqueId('unknown')), undefined)
  })

  test('handOff marks a pending request handed_off and leaves a final one alone', async (t) => {
    const journal = await make(t)
    const pending = uniqueId('handoff')
    const done = uniqueId('handoff-done')
    await journal.accept(entry(pending))
    await journal.accept(entry(done))
    await journal.complete({ id: done, state: 'done', response: response('kept') })
    await journal.handOff({ id: pending, reason: 'test' })
    await journal.handOff({ id: done, reason: 'test' })
    assert.equal((await journal.get(pending))?.state, 'handed_off')
    assert.ok((await journal.payload(pending))?.equals(entry(pending).payload), 'a handed-off request keeps its payload for the replayer')
    const view = await journal.get(done)
    assert.equal(view?.state, 'done')
    assert.deepEqual(JSON.parse(String(view?.response?.body)), { text: 'kept' })
    // A handed-off request can still be completed, once.
    await journal.complete({ id: pending, state: 'done', response: response('replayed') })
    assert.equal((await journal.get(pending))?.state, 'done')
  })

  test('requests and results expire after resultTtlSeconds, freeing the id', async (t) => {
    const journal = await make(t, { resultTtlSeconds: 1 })
    const done = uniqueId('ttl-done')
    const pending = uniqueId('ttl-pending')
    await journal.accept(entry(done))
    await journal.accept(entry(pending))
    await journal.complete({ id: done, state: 'done', response: response('short-lived') })
    assert.equal((await journal.get(done))?.state, 'done')
    await sleep(1300)
    assert.equal(await journal.get(done), undefined)
    assert.equal(await journal.get(pending), undefined)
    assert.equal(await journal.waitForFinal(done, 100), undefined)
    assert.deepEqual(await journal.accept(entry(done, 'fp-new')), { accepted: true }, 'an expired key can be used again, with any body')
  })

  test('unavailableReason is undefined while the journal takes requests', async (t) => {
    const journal = await make(t)
    assert.equal(journal.unavailableReason(), undefined)
    await journal.accept(entry(uniqueId('ok')))
    assert.equal(journal.unavailableReason(), undefined)
  })
}

describe('EmbeddedJournal', () => {
  contract(async (t, options = {}) => {
    const journal = new EmbeddedJournal(options.instanceId ?? INSTANCE, options.resultTtlSeconds ?? 60)
    t.after(() => journal.close())
    assert.equal(journal.kind, 'embedded')
    assert.equal(journal.peersCanReplay, false)
    return journal
  })
})

describe('RedisJournal', () => {
  let redis: RedisServer
  before(async () => { redis = await RedisServer.start() })
  after(async () => { await redis?.stop() })

  function makeRedis (url: () => string): Make {
    return async (t, options = {}) => {
      const journal = new RedisJournal({
        url: url(),
        namespace: options.namespace ?? randomUUID(),
        instanceId: options.instanceId ?? INSTANCE,
        resultTtlSeconds: options.resultTtlSeconds ?? 60,
        commandTimeoutMs: 500,
        leaseTtlMs: 5000,
        metrics: createMetrics(),
        log: pino({ level: 'silent' })
      })
      t.after(() => journal.close())
      await waitAvailable(journal)
      return journal
    }
  }

  const make = makeRedis(() => redis.url)
  contract(make)

  test('a completion on one instance wakes a waiter on another', async (t) => {
    const namespace = randomUUID()
    const a = await make(t, { namespace, instanceId: 'peer-a' })
    const b = await make(t, { namespace, instanceId: 'peer-b' })
    const id = uniqueId('peer')
    assert.deepEqual(await a.accept(entry(id)), { accepted: true })
    const dup = await b.accept(entry(id))
    assert.ok(!dup.accepted)
    assert.equal(dup.sameBody, true)
    assert.equal(dup.existing.owner, 'peer-a')
    const waiting = b.waitForFinal(id, 5000).then((view) => ({ view, at: performance.now() }))
    await sleep(200)
    const completedAt = performance.now()
    await a.complete({ id, state: 'done', response: response('from a') })
    const { view, at } = await waiting
    t.diagnostic(`peer waiter returned ${(at - completedAt).toFixed(1)} ms after the completion`)
    assert.equal(view?.state, 'done')
    assert.deepEqual(JSON.parse(String(view?.response?.body)), { text: 'from a' })
    assert.ok(at - completedAt < 150)
  })

  test('waitForFinal does not poll Redis while it waits', async (t) => {
    const journal = await make(t)
    const id = uniqueId('nopoll')
    await journal.accept(entry(id))
    const admin = redis.client()
    t.after(() => admin.disconnect())
    await admin.config('RESETSTAT')
    const view = await journal.waitForFinal(id, 1000)
    assert.equal(view?.state, 'queued')
    const stats = await admin.info('commandstats')
    const calls = (name: string): number => Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(stats)?.[1] ?? 0)
    const reads = calls('hmget') + calls('hget') + calls('hgetall') + calls('evalsha') + calls('eval') + calls('exists')
    t.diagnostic(`reads during a 1 s wait: ${reads}`)
    assert.ok(reads <= 3, `waitForFinal read Redis ${reads} times in 1 s (busy polling?)\n${stats}`)
  })

  test('every key a request leaves in Redis has a TTL no longer than resultTtlSeconds', async (t) => {
    const namespace = randomUUID()
    const journal = await make(t, { namespace, resultTtlSeconds: 30 })
    const done = uniqueId('keys-done')
    const pending = uniqueId('keys-pending')
    const handed = uniqueId('keys-handed')
    for (const id of [done, pending, handed]) await journal.accept(entry(id))
    await journal.complete({ id: done, state: 'done', response: response('x') })
    await journal.handOff({ id: handed, reason: 'test' })
    const admin = redis.client()
    t.after(() => admin.disconnect())
    // The fleet's lease set is kept alive (and given its TTL) by the lease keeper, which this test does not run.
    const keys = (await admin.keys(`*${namespace}*`)).filter((key) => !key.endsWith(':leases'))
    assert.ok(keys.length >= 3, `expected the request keys, found ${JSON.stringify(keys)}`)
    for (const id of [done, pending, handed]) assert.ok(keys.some((k) => k.endsWith(id)), `no key for ${id} in ${JSON.stringify(keys)}`)
    for (const key of keys) {
      const ttl = await admin.pttl(key)
      assert.ok(ttl > 0, `${key} has no TTL (PTTL ${ttl})`)
      if ([done, pending, handed].some((id) => key.endsWith(id))) assert.ok(ttl <= 30_000, `${key} lives ${ttl} ms, longer than resultTtlSeconds`)
    }
  })

  test('with Redis killed it refuses at once, says why, keeps unsent results and recovers after a restart', async (t) => {
    const own = await RedisServer.start()
    t.after(() => own.stop())
    const journal = await makeRedis(() => own.url)(t)
    const id = uniqueId('outage')
    assert.deepEqual(await journal.accept(entry(id)), { accepted: true })

    const killedAt = performance.now()
    await own.kill()
    while (journal.unavailableReason() === undefined && performance.now() - killedAt < 2000) await sleep(10)
    const noticed = performance.now() - killedAt
    t.diagnostic(`unavailable ${noticed.toFixed(0)} ms after the kill: ${journal.unavailableReason() ?? ''}`)
    assert.ok(journal.unavailableReason() !== undefined && noticed < 1000, `still available ${noticed.toFixed(0)} ms after the kill`)

    const started = performance.now()
    await assert.rejects(journal.accept(entry(uniqueId('refused'))), JournalUnavailableError)
    await assert.rejects(journal.get(id), JournalUnavailableError)
    await assert.rejects(journal.waitForFinal(id, 2000), JournalUnavailableError)
    // The result of a request accepted before the outage is kept and stored once Redis is back.
    await journal.complete({ id, state: 'done', response: response('kept through the outage') })
    const refusing = performance.now() - started
    assert.ok(refusing < 1500, `refusing took ${refusing.toFixed(0)} ms`)

    await own.restart()
    await waitAvailable(journal, 5000)
    const deadline = Date.now() + 5000
    let view = await journal.get(id)
    while (view?.state !== 'done' && Date.now() < deadline) {
      await sleep(50)
      view = await journal.get(id)
    }
    assert.equal(view?.state, 'done', 'the completion made during the outage was stored after the restart')
    assert.deepEqual(JSON.parse(String(view?.response?.body)), { text: 'kept through the outage' })
    assert.deepEqual(await journal.accept(entry(uniqueId('after'))), { accepted: true })
  })

  test('a hung Redis (SIGSTOP) is reported within a second and commands fail within the command timeout', async (t) => {
    const own = await RedisServer.start()
    t.after(() => own.stop())
    const journal = await makeRedis(() => own.url)(t)
    const id = uniqueId('hung')
    assert.deepEqual(await journal.accept(entry(id)), { accepted: true })
    // A waiter before the outage, so the journal's subscriber connection exists when Redis hangs.
    assert.equal((await journal.waitForFinal(id, 0))?.state, 'queued')
    own.pause()
    t.after(() => own.resume())
    const started = performance.now()
    await assert.rejects(journal.get(id), JournalUnavailableError)
    const failedAfter = performance.now() - started
    assert.ok(failedAfter < 1000, `a command to a hung Redis took ${failedAfter.toFixed(0)} ms to fail`)
    while (journal.unavailableReason() === undefined && performance.now() - started < 2000) await sleep(10)
    const noticed = performance.now() - started
    t.diagnostic(`get failed after ${failedAfter.toFixed(0)} ms; unavailable after ${noticed.toFixed(0)} ms`)
    assert.ok(noticed < 1500, `hung Redis noticed after ${noticed.toFixed(0)} ms`)
    // Every call says "unavailable" in the one way callers map to 503, the subscription of a waiter included.
    const waitStarted = performance.now()
    const waitError = await journal.waitForFinal(id, 5000).then(() => undefined, (error: Error) => error)
    await assert.rejects(journal.accept(entry(uniqueId('hung-accept'))), JournalUnavailableError)
    await assert.rejects(journal.payload(id), JournalUnavailableError)
    assert.ok(performance.now() - waitStarted < 1500, 'refused within the command timeout')
    own.resume()
    await waitAvailable(journal, 5000)
    assert.deepEqual(await journal.accept(entry(uniqueId('resumed'))), { accepted: true })
    assert.ok(waitError instanceof JournalUnavailableError,
      `waitForFinal against a hung Redis must reject with JournalUnavailableError (the route answers 503); got ${waitError === undefined ? 'no error' : `${waitError.name}: ${waitError.message}`}`)
  })
})
