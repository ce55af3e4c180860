import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { EmbeddedJournal } from '../../src/journal/embedded-journal.js'
import { Redis } from 'ioredis'
import { encodePendingRecord } from '../../src/journal/record.js'
import { journalKeys, partitionTag } from '../../src/journal/redis/keys.js'
import { loadScripts } from '../../src/journal/redis/scripts.js'
import { JournalUnavailableError, type AcceptEntry, type Journal, type StoredResponse } from '../../src/journal/journal.js'
import type { Cleanup } from '../helpers/app.js'
import { completion, fingerprintOf, rawEntry, redisJournal, type TestRedisJournal } from '../helpers/redis-journal.js'
import { RedisCluster, RedisSentinelGroup, RedisServer } from '../helpers/redis-server.js'
import { allow } from '../helpers/timing.js'

// One contract (src/journal/journal.ts), two implementations: every test in `contract`
// runs against the in-process journal and against the Redis journal on a real
// redis-server, with one partition and with several. Redis-only behaviour (peers, the
// replay stream, key TTLs, outages) follows.

const INSTANCE = 'contract-a'

interface MakeOptions {
  readonly resultTtlSeconds?: number
  readonly instanceId?: string
  /** Redis only: share a namespace between two journals (peers). */
  readonly namespace?: string
}

/** Fingerprints are record-length strings; these read as labels. */
const FP_A = fingerprintOf('fp-a')
const FP_B = fingerprintOf('fp-b')

type Make = (t: Cleanup, options?: MakeOptions) => Promise<Journal>

function entry (id: string, fingerprint = FP_A, request?: Buffer, owner = INSTANCE): AcceptEntry {
  return rawEntry(id, owner, fingerprint, request)
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
    await journal.accept(entry(id, FP_A))
    const again = await journal.accept(entry(id, FP_B))
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
    await journal.complete(completion(id, 'done', response('first')))
    await journal.complete(completion(id, 'failed', response('second', 500)))
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
    await journal.complete(completion(id, 'failed', response('boom', 500)))
    await journal.complete(completion(id, 'done', response('late')))
    const view = await journal.get(id)
    assert.equal(view?.state, 'failed')
    assert.equal(view?.response?.statusCode, 500)
    assert.deepEqual(JSON.parse(String(view?.response?.body)), { text: 'boom' })
  })

  test('accepting a completed id returns the stored answer', async (t) => {
    const journal = await make(t)
    const id = uniqueId('replay')
    await journal.accept(entry(id))
    await journal.complete(completion(id, 'done', response('stored')))
    const again = await journal.accept(entry(id))
    assert.ok(!again.accepted)
    assert.equal(again.sameBody, true)
    assert.equal(again.existing.state, 'done')
    assert.deepEqual(JSON.parse(String(again.existing.response?.body)), { text: 'stored' })
    const other = await journal.accept(entry(id, fingerprintOf('fp-other')))
    assert.ok(!other.accepted)
    assert.equal(other.sameBody, false)
  })

  test('complete of an id that was never accepted stores nothing', async (t) => {
    const journal = await make(t)
    const id = uniqueId('never')
    await journal.complete(completion(id, 'done', response('orphan')))
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
    await journal.complete(completion(id, 'done', response('woken')))
    const { view, at } = await waiting
    const lag = at - completedAt
    t.diagnostic(`waiter returned ${lag.toFixed(1)} ms after the completion`)
    assert.equal(view?.state, 'done')
    assert.deepEqual(JSON.parse(String(view?.response?.body)), { text: 'woken' })
    assert.ok(lag < allow(150), `waitForFinal returned ${lag.toFixed(0)} ms after complete`)
  })

  test('several waiters of one id are all woken', async (t) => {
    const journal = await make(t)
    const id = uniqueId('waiters')
    await journal.accept(entry(id))
    const started = performance.now()
    const waiting = Promise.all(Array.from({ length: 3 }, () => journal.waitForFinal(id, 5000)))
    await sleep(150)
    await journal.complete(completion(id, 'done', response('all')))
    const views = await waiting
    assert.ok(performance.now() - started < allow(1500))
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
    assert.ok(elapsed >= 280 && elapsed < allow(1000), `waited ${elapsed.toFixed(0)} ms for a 300 ms bound`)
  })

  test('waitForFinal returns at once for a final request, an unknown id or a zero timeout', async (t) => {
    const journal = await make(t)
    const done = uniqueId('final')
    const pending = uniqueId('pending')
    await journal.accept(entry(done))
    await journal.accept(entry(pending))
    await journal.complete(completion(done, 'done', response('x')))
    const started = performance.now()
    assert.equal((await journal.waitForFinal(done, 5000))?.state, 'done')
    assert.equal(await journal.waitForFinal(uniqueId('unknown'), 5000), undefined)
    assert.equal((await journal.waitForFinal(pending, 0))?.state, 'queued')
    const elapsed = performance.now() - started
    assert.ok(elapsed < allow(500), `took ${elapsed.toFixed(0)} ms`)
  })

  test('handOff marks a pending request handed_off and leaves a final one alone', async (t) => {
    const journal = await make(t)
    const pending = uniqueId('handoff')
    const done = uniqueId('handoff-done')
    await journal.accept(entry(pending))
    await journal.accept(entry(done))
    await journal.complete(completion(done, 'done', response('kept')))
    await journal.handOff({ id: pending, reason: 'test' })
    await journal.handOff({ id: done, reason: 'test' })
    assert.equal((await journal.get(pending))?.state, 'handed_off')
    const view = await journal.get(done)
    assert.equal(view?.state, 'done')
    assert.deepEqual(JSON.parse(String(view?.response?.body)), { text: 'kept' })
    // A handed-off request can still be completed, once.
    await journal.complete(completion(pending, 'done', response('replayed')))
    assert.equal((await journal.get(pending))?.state, 'done')
  })

  test('requests and results expire after resultTtlSeconds, freeing the id', async (t) => {
    const journal = await make(t, { resultTtlSeconds: 1 })
    const done = uniqueId('ttl-done')
    const pending = uniqueId('ttl-pending')
    await journal.accept(entry(done))
    await journal.accept(entry(pending))
    await journal.complete(completion(done, 'done', response('short-lived')))
    assert.equal((await journal.get(done))?.state, 'done')
    await sleep(1300)
    assert.equal(await journal.get(done), undefined)
    assert.equal(await journal.get(pending), undefined)
    assert.equal(await journal.waitForFinal(done, 100), undefined)
    assert.deepEqual(await journal.accept(entry(done, fingerprintOf('fp-new'))), { accepted: true }, 'an expired key can be used again, with any body')
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

type MakeParts = (t: Cleanup, options?: MakeOptions) => Promise<TestRedisJournal>

/** What instances sharing a Redis journal see of each other, on every kind of Redis deployment. */
function peerContract (makeParts: MakeParts): void {
  const make: Make = async (t, options) => (await makeParts(t, options)).journal

  test('a handed-off request reaches the replayer byte for byte, and the claim makes the replayer its owner', async (t) => {
    const namespace = randomUUID()
    const owner = await makeParts(t, { namespace, instanceId: 'owner' })
    const replayer = await makeParts(t, { namespace, instanceId: 'replayer' })
    const id = uniqueId('bytes')
    // Every byte value, zeros and invalid UTF-8 included, in a request the size of a real tensor.
    const bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(256 * 1024), Buffer.alloc(16)])
    assert.deepEqual(await owner.journal.accept(entry(id, FP_A, bytes, 'owner')), { accepted: true })
    await owner.journal.handOff({ id, reason: 'drain' })
    const view = await replayer.journal.get(id)
    assert.equal(view?.state, 'handed_off')
    assert.equal(view?.owner, '')
    const entries = await replayer.fleet.readReplayEntries(10, 60_000, 0)
    assert.deepEqual(entries.map((e) => e.id), [id])
    const claim = await replayer.fleet.claimReplay(entries[0], 3)
    assert.equal(claim.kind, 'claimed')
    assert.ok(claim.kind === 'claimed' && claim.request.equals(bytes), 'the request bytes differ')
    assert.equal(claim.kind === 'claimed' && claim.fingerprint, FP_A)
    assert.deepEqual(await replayer.journal.get(id), { id, state: 'replaying', owner: 'replayer', fingerprint: FP_A })
    // A second entry for the same request (a dead replayer's and its take-over) is skipped by the replayer running it.
    assert.deepEqual(await replayer.fleet.claimReplay(entries[0], 3), { kind: 'skip' })
  })

  test('a request past its replay attempts is given up with its fingerprint and last error', async (t) => {
    const namespace = randomUUID()
    const owner = await makeParts(t, { namespace, instanceId: 'owner' })
    const replayer = await makeParts(t, { namespace, instanceId: 'replayer' })
    const id = uniqueId('exhausted')
    await owner.journal.accept(entry(id, FP_B, undefined, 'owner'))
    await owner.journal.handOff({ id, reason: 'worker_crashed' })
    const [first] = await replayer.fleet.readReplayEntries(10, 60_000, 0)
    assert.equal((await replayer.fleet.claimReplay(first, 1)).kind, 'claimed')
    await replayer.fleet.recordReplayError(id, 'the model crashed')
    await replayer.journal.handOff({ id, reason: 'worker_crashed' })
    await replayer.fleet.ackReplay(first)
    const [second] = await replayer.fleet.readReplayEntries(10, 60_000, 0)
    assert.deepEqual(await replayer.fleet.claimReplay(second, 1), { kind: 'exhausted', attempts: 1, lastError: 'the model crashed', fingerprint: FP_B })
  })

  test('a completion on one instance wakes a waiter on another', async (t) => {
    const namespace = randomUUID()
    const a = await make(t, { namespace, instanceId: 'peer-a' })
    const b = await make(t, { namespace, instanceId: 'peer-b' })
    const id = uniqueId('peer')
    assert.deepEqual(await a.accept(entry(id, FP_A, undefined, 'peer-a')), { accepted: true })
    const dup = await b.accept(entry(id))
    assert.ok(!dup.accepted)
    assert.equal(dup.sameBody, true)
    assert.equal(dup.existing.owner, 'peer-a')
    const waiting = b.waitForFinal(id, 5000).then((view) => ({ view, at: performance.now() }))
    await sleep(200)
    const completedAt = performance.now()
    await a.complete(completion(id, 'done', response('from a')))
    const { view, at } = await waiting
    t.diagnostic(`peer waiter returned ${(at - completedAt).toFixed(1)} ms after the completion`)
    assert.equal(view?.state, 'done')
    assert.deepEqual(JSON.parse(String(view?.response?.body)), { text: 'from a' })
    assert.ok(at - completedAt < allow(150))
  })

  test('a short wait on one instance does not cut short a long wait on another', async (t) => {
    const namespace = randomUUID()
    const a = await make(t, { namespace, instanceId: 'peer-a' })
    const b = await make(t, { namespace, instanceId: 'peer-b' })
    const c = await make(t, { namespace, instanceId: 'peer-c' })
    const id = uniqueId('long-wait')
    await a.accept(entry(id, FP_A, undefined, 'peer-a'))
    const waiting = b.waitForFinal(id, 10_000).then((view) => ({ view, at: performance.now() }))
    await sleep(100)
    // A poll with a short wait marks the request as waited for, for a shorter time than b waits.
    assert.equal((await c.waitForFinal(id, 50))?.state, 'queued')
    // Past the short wait and its slack: only the long wait still marks the request.
    await sleep(1500)
    const completedAt = performance.now()
    await a.complete(completion(id, 'done', response('late')))
    const { view, at } = await waiting
    assert.equal(view?.state, 'done')
    assert.ok(at - completedAt < allow(150), `the long wait returned ${(at - completedAt).toFixed(0)} ms after the completion`)
  })
}

describe('Redis journal', () => {
  let redis: RedisServer
  before(async () => { redis = await RedisServer.start() })
  after(async () => { await redis?.stop() })

  function makeRedis (url: () => string, partitions = 1): (t: Cleanup, options?: MakeOptions) => Promise<TestRedisJournal> {
    return async (t, options = {}) => redisJournal(t, url(), { partitions, instanceId: options.instanceId ?? INSTANCE, resultTtlSeconds: options.resultTtlSeconds ?? 60, ...(options.namespace !== undefined && { namespace: options.namespace }) })
  }
  const makeParts = makeRedis(() => redis.url)
  const make: Make = async (t, options) => (await makeParts(t, options)).journal

  describe('one partition', () => contract(make))
  describe('seven partitions', () => contract(async (t, options) => (await makeRedis(() => redis.url, 7)(t, options)).journal))
  describe('peers', () => peerContract(makeParts))

  test('a withdrawal removes only what its own accept call wrote, and nothing a client waits for', async (t) => {
    const client = new Redis(redis.url)
    t.after(() => client.disconnect())
    const lua = new Map(loadScripts().map((script) => [script.command, script.lua]))
    const keys = journalKeys(`withdraw-${randomUUID().slice(0, 8)}`, 1)
    const [p] = keys.partitions
    const owned = keys.owned(p, 'me')
    const record = encodePendingRecord({ model: 'm', version: '1', inputs: [] }, undefined, 'me').bytes
    const accept = (id: string, stamp: number): Promise<unknown> =>
      client.eval(lua.get('spotgateAccept') as string, 3, owned, p.leases, p.recordPrefix + id, 60_000, 5000, 'me', stamp, p.recordPrefix.length, p.statePrefix, record)
    const withdraw = (id: string, stamp: number): Promise<unknown> =>
      client.eval(lua.get('spotgateWithdraw') as string, 2, owned, p.recordPrefix + id, 'me', p.recordPrefix.length, p.statePrefix, stamp, p.waiterPrefix)
    const stamp = Date.now() + 0.001
    await accept('a', stamp)
    assert.equal(await withdraw('a', stamp + 0.001), 0, 'another accept call (a later retry of the id) removes nothing of this one')
    await client.set(p.waiterPrefix + 'a', '1', 'PX', 10_000)
    assert.equal(await withdraw('a', stamp), 0, 'a record a client waits for stays, to be handed off and run')
    assert.equal(await client.exists(p.recordPrefix + 'a'), 1)
    await client.del(p.waiterPrefix + 'a')
    assert.equal(await withdraw('a', stamp), 1)
    assert.equal(await client.exists(p.recordPrefix + 'a'), 0)
    assert.equal(await client.zscore(owned, 'a'), null)
  })

  test('with several partitions the keys of many requests spread over every hash tag, and each is found again', async (t) => {
    const namespace = randomUUID()
    const { journal } = await makeRedis(() => redis.url, 4)(t, { namespace })
    const ids = Array.from({ length: 40 }, (_, i) => `spread-${i}`)
    const results = await Promise.all(ids.map((id) => journal.accept(entry(id))))
    assert.ok(results.every((r) => r.accepted))
    const admin = redis.client()
    t.after(() => admin.disconnect())
    const tags = new Set((await admin.keys(`spotgate:{${namespace}:*}:r:*`)).map((key) => /\{([^}]+)\}/.exec(key)?.[1]))
    assert.deepEqual([...tags].sort(), [0, 1, 2, 3].map((p) => partitionTag(namespace, p, 4)).sort())
    for (const id of ids) assert.equal((await journal.get(id))?.state, 'queued')
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
    // Every read of a request is one call of the read script (the commands inside it are counted too, so only the calls are summed).
    const reads = calls('evalsha') + calls('eval') + calls('hgetall') + calls('get')
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
    await journal.complete(completion(done, 'done', response('x')))
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
    const { journal } = await makeRedis(() => own.url)(t)
    const id = uniqueId('outage')
    assert.deepEqual(await journal.accept(entry(id)), { accepted: true })

    const killedAt = performance.now()
    await own.kill()
    while (journal.unavailableReason() === undefined && performance.now() - killedAt < 2000) await sleep(10)
    const noticed = performance.now() - killedAt
    t.diagnostic(`unavailable ${noticed.toFixed(0)} ms after the kill: ${journal.unavailableReason() ?? ''}`)
    assert.ok(journal.unavailableReason() !== undefined && noticed < allow(1000), `still available ${noticed.toFixed(0)} ms after the kill`)

    const started = performance.now()
    await assert.rejects(journal.accept(entry(uniqueId('refused'))), JournalUnavailableError)
    await assert.rejects(journal.get(id), JournalUnavailableError)
    await assert.rejects(journal.waitForFinal(id, 2000), JournalUnavailableError)
    // The result of a request accepted before the outage is kept and stored once Redis is back.
    await journal.complete(completion(id, 'done', response('kept through the outage')))
    const refusing = performance.now() - started
    assert.ok(refusing < allow(1500), `refusing took ${refusing.toFixed(0)} ms`)

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
    const { journal } = await makeRedis(() => own.url)(t)
    const id = uniqueId('hung')
    assert.deepEqual(await journal.accept(entry(id)), { accepted: true })
    // A waiter before the outage, so the journal's subscriber connection exists when Redis hangs.
    assert.equal((await journal.waitForFinal(id, 0))?.state, 'queued')
    own.pause()
    t.after(() => own.resume())
    const started = performance.now()
    await assert.rejects(journal.get(id), JournalUnavailableError)
    const failedAfter = performance.now() - started
    assert.ok(failedAfter < allow(1000), `a command to a hung Redis took ${failedAfter.toFixed(0)} ms to fail`)
    while (journal.unavailableReason() === undefined && performance.now() - started < 2000) await sleep(10)
    const noticed = performance.now() - started
    t.diagnostic(`get failed after ${failedAfter.toFixed(0)} ms; unavailable after ${noticed.toFixed(0)} ms`)
    assert.ok(noticed < allow(1500), `hung Redis noticed after ${noticed.toFixed(0)} ms`)
    // Every call says "unavailable" in the one way callers map to 503, the subscription of a waiter included.
    const waitStarted = performance.now()
    const waitError = await journal.waitForFinal(id, 5000).then(() => undefined, (error: Error) => error)
    await assert.rejects(journal.accept(entry(uniqueId('hung-accept'))), JournalUnavailableError)
    await assert.rejects(journal.get(id), JournalUnavailableError)
    assert.ok(performance.now() - waitStarted < allow(1500), 'refused within the command timeout')
    own.resume()
    await waitAvailable(journal, 5000)
    assert.deepEqual(await journal.accept(entry(uniqueId('resumed'))), { accepted: true })
    assert.ok(waitError instanceof JournalUnavailableError,
      `waitForFinal against a hung Redis must reject with JournalUnavailableError (the route answers 503); got ${waitError === undefined ? 'no error' : `${waitError.name}: ${waitError.message}`}`)
  })
})

describe('Redis Cluster, three primaries with a replica each', () => {
  let cluster: RedisCluster
  before(async () => { cluster = await RedisCluster.start(3) })
  after(async () => { await cluster?.stop() })
  const makeParts: MakeParts = async (t, options = {}) => redisJournal(t, cluster.target, {
    partitions: 16,
    instanceId: options.instanceId ?? INSTANCE,
    resultTtlSeconds: options.resultTtlSeconds ?? 60,
    ...(options.namespace !== undefined && { namespace: options.namespace })
  })

  describe('contract', () => contract(async (t, options) => (await makeParts(t, options)).journal))
  describe('peers', () => peerContract(makeParts))

  test('the journal spreads over every primary, each script in one slot, and every request is found again', async (t) => {
    const namespace = randomUUID()
    const { journal, keys } = await makeParts(t, { namespace })
    const ids = Array.from({ length: 120 }, (_, i) => `spread-${i}`)
    assert.ok((await Promise.all(ids.map((id) => journal.accept(entry(id))))).every((r) => r.accepted))
    const perPrimary = await Promise.all((await cluster.primaries()).map(async (primary) => {
      const admin = primary.client()
      t.after(() => admin.disconnect())
      return (await admin.keys(`spotgate:{${namespace}:*}:r:*`)).length
    }))
    t.diagnostic(`records per primary: ${perPrimary.join(', ')}`)
    assert.equal(perPrimary.length, 3)
    assert.equal(perPrimary.reduce((a, b) => a + b, 0), ids.length)
    assert.ok(perPrimary.every((count) => count > 0), `a primary holds none of the journal: ${perPrimary.join(', ')}`)
    assert.equal(new Set(keys.partitions.map((p) => p.leases)).size, 16)
    for (const id of ids) assert.equal((await journal.get(id))?.state, 'queued')
  })

  test('with JOURNAL_MIN_REPLICAS=1 an accept is acknowledged once the shard\'s replica has it', async (t) => {
    const { journal, keys } = await redisJournal(t, cluster.target, { partitions: 16, instanceId: INSTANCE, minReplicas: 1 })
    const id = uniqueId('durable')
    assert.deepEqual(await journal.accept(entry(id)), { accepted: true })
    const primary = await cluster.primaryFor(keys.record(id))
    const replicas = await Promise.all(cluster.nodes.filter((n) => n !== primary).map(async (node) => {
      const admin = node.client()
      t.after(() => admin.disconnect())
      return (await admin.call('READONLY').then(() => admin.exists(keys.record(id))).catch(() => 0)) as number
    }))
    assert.equal(replicas.filter((found) => found === 1).length, 1, 'exactly the shard\'s replica holds the record')
  })
})

describe('Redis behind Sentinel, a primary with two replicas', () => {
  let group: RedisSentinelGroup
  before(async () => { group = await RedisSentinelGroup.start(2) })
  after(async () => { await group?.stop() })
  const makeParts: MakeParts = async (t, options = {}) => redisJournal(t, group.target, {
    instanceId: options.instanceId ?? INSTANCE,
    resultTtlSeconds: options.resultTtlSeconds ?? 60,
    ...(options.namespace !== undefined && { namespace: options.namespace })
  })

  describe('contract', () => contract(async (t, options) => (await makeParts(t, options)).journal))
  describe('peers', () => peerContract(makeParts))
  describe('contract with JOURNAL_MIN_REPLICAS=2', () => contract(async (t, options = {}) => (await redisJournal(t, group.target, {
    instanceId: options.instanceId ?? INSTANCE,
    resultTtlSeconds: options.resultTtlSeconds ?? 60,
    minReplicas: 2,
    ...(options.namespace !== undefined && { namespace: options.namespace })
  })).journal))
})

describe('the Lua scripts', () => {
  const dir = new URL('../../src/journal/redis/lua/', import.meta.url)
  const scripts = readdirSync(dir).filter((file) => file.endsWith('.lua'))

  test('each is named after its key count and opens with the keys, arguments and return values it takes', () => {
    assert.ok(scripts.length >= 8, scripts.join(', '))
    for (const file of scripts) {
      const source = readFileSync(new URL(file, dir), 'utf8')
      const header = /^--\[\[([\s\S]*?)\]\]/.exec(source)?.[1]
      assert.ok(header !== undefined, `${file} opens with a comment block`)
      const [, keys] = /-(\d+|n)\.lua$/.exec(file) ?? []
      const listed = [...header.matchAll(/^\s+KEYS\[(\d+)(\.\.)?\]/gm)]
      assert.ok(listed.length > 0, `${file} lists its KEYS`)
      if (keys === 'n') assert.ok(listed.some((m) => m[2] === '..'), `${file} takes a variable number of keys: one KEYS[i..] line`)
      else assert.deepEqual(listed.map((m) => Number(m[1])), Array.from({ length: Number(keys) }, (_, i) => i + 1), `${file} lists KEYS[1..${keys}]`)
      assert.match(header, /^\s+ARGV\[1\]/m, `${file} lists its ARGV`)
      assert.match(header, /Returns/, `${file} says what it returns`)
      for (const [, used] of source.matchAll(/KEYS\[(\d+)\]/g)) {
        if (keys !== 'n') assert.ok(Number(used) <= Number(keys), `${file} uses KEYS[${used}] beyond its ${keys} keys`)
      }
    }
  })
})
