import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfig } from '../../src/config.js'
import { createInstance, type Instance } from '../../src/instance.js'
import { JournalUnavailableError, type AcceptEntry, type AcceptResult, type Completion, type Journal } from '../../src/journal/journal.js'
import type { Cleanup } from '../helpers/app.js'
import { startRedis } from '../helpers/fleet.js'
import { makeRepository } from '../helpers/model-repo.js'
import { classifierBody, spinBody, spinIterations } from '../helpers/requests.js'

// The accept is sent before the run starts and acknowledged while it runs; no answer leaves
// before the acknowledgement, and the completion is written after the answer. These tests
// hold the journal at each point where the overlap could leak or lose an answer.

const redis = await startRedis(after)
const repo = await makeRepository(['classifier', 'spin'])
after(repo.cleanup)

function config (namespace: string, instanceId: string, extra: Record<string, string> = {}) {
  return loadConfig({
    LOG_LEVEL: 'silent',
    MODEL_INSTANCES: '1',
    EXECUTION_PROVIDERS: 'cpu',
    PREEMPTION_SOURCES: 'none',
    MODEL_REPOSITORY: repo.dir,
    REDIS_URL: redis.url,
    JOURNAL_NAMESPACE: namespace,
    INSTANCE_ID: instanceId,
    LEASE_TTL_MS: '1000',
    ...extra
  }, false)
}

/** A journal whose calls go through `override` first: it decides what the instance sees. */
function intercept (inner: Journal, override: Partial<Pick<Journal, 'accept' | 'complete'>>): Journal {
  return new Proxy(inner, {
    get (target, property, receiver) {
      if (property === 'accept' && override.accept !== undefined) return override.accept
      if (property === 'complete' && override.complete !== undefined) return override.complete
      const value: unknown = Reflect.get(target, property, receiver)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    }
  })
}

async function instance (t: Cleanup, namespace: string, name: string, wrap?: (journal: Journal) => Journal): Promise<Instance> {
  const built = await createInstance(config(namespace, name), { noticeSources: [], ...(wrap !== undefined && { wrapJournal: wrap }) })
  t.after(() => built.close())
  await built.start()
  return built
}

/** Runs of a model's latest version started so far (its batch-size histogram's count, observed when a run is dispatched). */
async function runs (target: Instance, model: string): Promise<number> {
  const version = target.models.resolve(model).version
  const text = await target.metrics.registry.getSingleMetricAsString('spotgate_batch_size')
  const line = text.split('\n').find((l) => l.startsWith(`spotgate_batch_size_count{model="${model}",version="${version}"}`))
  return line === undefined ? 0 : Number(line.split(' ').at(-1))
}

test('an accept that fails after the run finished: 503, no answer leaks, nothing is stored as done', async (t) => {
  const namespace = `overlap-${randomUUID()}`
  const built: { gate?: Instance } = {}
  const gate = built.gate = await instance(t, namespace, 'failing-accept', (journal) => intercept(journal, {
    accept: async (entry: AcceptEntry): Promise<AcceptResult> => {
      // The accept reaches Redis, but its acknowledgement is lost after the speculative run
      // has started and (a classifier run takes well under a millisecond) finished.
      await journal.accept(entry)
      const deadline = Date.now() + 5000
      while (await runs(built.gate as Instance, 'classifier') < 1 && Date.now() < deadline) await sleep(5)
      await sleep(200)
      throw new JournalUnavailableError('journal unavailable: the reply to the accept was lost')
    }
  }))
  const id = 'accept-lost'
  const response = await gate.app.inject({ method: 'POST', url: '/v2/models/classifier/infer', payload: classifierBody(1), headers: { 'idempotency-key': id } })
  assert.equal(await runs(gate, 'classifier'), 1, 'the run finished before the accept failed')
  assert.equal(response.statusCode, 503, response.body)
  assert.ok(response.headers['retry-after'] !== undefined)
  assert.doesNotMatch(response.body, /outputs|probabilities/, 'no part of the answer leaks')
  const view = await gate.journal.get(id)
  assert.equal(view?.state, 'queued', 'the record the accept wrote stays pending: never stored as done')
  assert.equal(view?.response, undefined)
})

test('a duplicate found at accept time while its speculative run is in flight waits for the first instance\'s answer', async (t) => {
  const namespace = `overlap-${randomUUID()}`
  const first = await instance(t, namespace, 'first')
  const second = await instance(t, namespace, 'second')
  const id = 'duplicate-in-flight'
  const body = spinBody(spinIterations(400))
  const accepted = await first.app.inject({ method: 'POST', url: '/v2/models/spin/infer', payload: body, headers: { 'idempotency-key': id, prefer: 'respond-async' } })
  assert.equal(accepted.statusCode, 202, 'journaled on the first instance, running there')

  const duplicate = await second.app.inject({ method: 'POST', url: '/v2/models/spin/infer', payload: body, headers: { 'idempotency-key': id } })
  assert.equal(duplicate.statusCode, 200, duplicate.body)
  assert.equal(duplicate.headers['idempotent-replayed'], 'true', 'answered from the journal, not from its own run')
  const stored = await first.journal.waitForFinal(id, 5000)
  assert.equal(stored?.state, 'done')
  assert.equal(duplicate.body, stored?.response?.body.toString(), 'the one answer stored, computed by the first instance')
  const requests = await second.metrics.registry.getSingleMetricAsString('spotgate_requests_total')
  assert.match(requests, /outcome="replayed"\} 1/)
  assert.doesNotMatch(requests, /outcome="ok"/, 'the second instance\'s speculative result was never an answer')
})

test('a completion not yet written when the instance dies: a peer replays the request and stores the same answer', async (t) => {
  const namespace = `overlap-${randomUUID()}`
  const dropped: Completion[] = []
  const dying = await instance(t, namespace, 'dies-after-answering', (journal) => intercept(journal, {
    // The answer has gone out; the completion never reaches Redis (the process is killed first).
    complete: async (completion: Completion) => { dropped.push(completion) }
  }))
  const peer = await instance(t, namespace, 'peer')
  const id = 'answered-then-killed'
  const body = classifierBody(2)
  const answered = await dying.app.inject({ method: 'POST', url: '/v2/models/classifier/infer', payload: body, headers: { 'idempotency-key': id } })
  assert.equal(answered.statusCode, 200, answered.body)
  assert.equal(dropped.length, 1)
  assert.equal((await peer.journal.get(id))?.state, 'queued', 'the answer was sent before its completion was stored')

  // Killed: no drain, no hand-off, no lease release; the peer takes its work over once the lease expires.
  await dying.close()
  const stored = await peer.journal.waitForFinal(id, 15_000)
  assert.equal(stored?.state, 'done', 'the peer replayed it')
  assert.equal(stored?.response?.body.toString(), answered.body, 'inference is a pure function: the same answer')
  const retry = await peer.app.inject({ method: 'POST', url: '/v2/models/classifier/infer', payload: body, headers: { 'idempotency-key': id } })
  assert.equal(retry.statusCode, 200)
  assert.equal(retry.headers['idempotent-replayed'], 'true')
  assert.equal(retry.body, answered.body)
})
