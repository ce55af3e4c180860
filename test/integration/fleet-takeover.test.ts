import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { waitUntil } from '../../scripts/lib/process.js'
import { inferenceSeconds, keyed, metric, metricSum, namespace, pollAnswer, startFleet, startRedis, waitInflight } from '../helpers/fleet.js'
import { makeRepository } from '../helpers/model-repo.js'
import { spinBody, spinIterations } from '../helpers/requests.js'
import { journalKeys } from '../../src/journal/redis/keys.js'
import { readJournal } from '../../scripts/lib/journal-records.js'

// The README's "The journal and the guarantee", item 3: an instance killed without notice has its unfinished requests
// taken over by exactly one peer once its lease expires, and any instance answers them.

const LEASE_TTL_MS = 1000
/** A peer reaps every half lease, so a dead lease is noticed at most this long after it expired. */
const REAP_PERIOD_MS = LEASE_TTL_MS / 2
const SLACK_MS = 1500

const redis = await startRedis(after)
const repo = await makeRepository(['spin'])
after(repo.cleanup)
const fleet = (t: Parameters<typeof startFleet>[0], count: number, env: Record<string, string> = {}) =>
  startFleet(t, count, { redis, namespace: namespace(), modelRepository: repo.dir, leaseTtlMs: LEASE_TTL_MS, env })

function output (text: string): { id?: string, y: number[] } {
  const body = JSON.parse(text) as { id?: string, outputs: Array<{ name: string, shape: number[], data: number[] }> }
  assert.deepEqual(body.outputs[0].shape, [1, 64])
  return { ...(body.id !== undefined && { id: body.id }), y: body.outputs[0].data }
}

test('SIGKILL of the owner mid-inference: a peer completes it after the lease expires and GET /infer/{id} on the peer answers', async (t) => {
  const [owner, peer] = await fleet(t, 2)
  const body = spinBody(spinIterations(600), { id: 'killed-mid-run' })
  const client = owner.post('/v2/models/spin/infer', body, keyed('killed-mid-run')).then((r) => r.status, (error: Error) => error.message)
  await waitInflight(owner, 'spin')
  const killedAt = Date.now()
  await owner.kill()
  const clientSaw = await client
  assert.equal(typeof clientSaw, 'string', `the owner died before answering, so its client saw a broken connection (got ${clientSaw})`)

  const answer = await pollAnswer([peer], 'killed-mid-run', { timeoutMs: 20_000 })
  assert.equal(answer.status, 200, answer.text)
  const replayed = output(answer.text)
  assert.equal(replayed.id, 'killed-mid-run', 'the v2 id is echoed by the replayed answer')

  // Bounded by the lease, one reap period and one run on the peer (measured there).
  const tookMs = answer.at - killedAt
  const runMs = (await inferenceSeconds(peer, 'spin')) * 1000
  const boundMs = LEASE_TTL_MS + REAP_PERIOD_MS + runMs + SLACK_MS
  t.diagnostic(`answered by the peer ${tookMs} ms after SIGKILL (lease ${LEASE_TTL_MS} ms, replay run ${runMs.toFixed(0)} ms, bound ${boundMs.toFixed(0)} ms)`)
  assert.ok(tookMs >= LEASE_TTL_MS / 3, `not before the owner's lease could expire (${tookMs} ms)`)
  assert.ok(tookMs <= boundMs, `answered ${tookMs} ms after the kill; bound ${boundMs.toFixed(0)} ms`)
  assert.equal(await metric(peer, 'spotgate_lease_takeovers_total'), 1)
  assert.equal(await metric(peer, 'spotgate_replays_total{outcome="done"}'), 1)

  // The same inputs computed afresh give the same answer, and a retry of the key gets the stored one.
  const fresh = await peer.post('/v2/models/spin/infer', body, keyed('killed-mid-run-check'))
  assert.equal(fresh.status, 200)
  assert.deepEqual(output(await fresh.text()).y, replayed.y)
  const retry = await peer.post('/v2/models/spin/infer', body, keyed('killed-mid-run'))
  assert.equal(retry.status, 200)
  assert.equal(retry.headers.get('idempotent-replayed'), 'true')
  assert.deepEqual(output(await retry.text()).y, replayed.y)
})

test('two peers racing for a dead instance\'s work: one takeover, and each request is run once by the fleet', async (t) => {
  const [owner, ...peers] = await fleet(t, 3)
  const ids = ['race-1', 'race-2', 'race-3']
  // Accepted (journaled) on the owner, which has one spin worker: one runs, the others queue.
  const accepted = await Promise.all(ids.map((id) => owner.post('/v2/models/spin/infer', spinBody(spinIterations(700), { id }), keyed(id, true))))
  for (const response of accepted) assert.equal(response.status, 202, await response.text())
  await owner.kill()
  const { records } = await readJournal(redis, peers[0].env.JOURNAL_NAMESPACE as string, ids)
  const states = ids.map((id) => records.get(id)?.state)
  const unfinished = states.filter((s) => s !== 'done').length
  assert.ok(unfinished >= 2, `most of the work was unfinished when the owner died (states: ${states.join(', ')})`)

  const answers = await Promise.all(ids.map((id) => pollAnswer(peers, id, { timeoutMs: 30_000 })))
  for (const answer of answers) assert.equal(answer.status, 200, answer.text)
  await sleep(LEASE_TTL_MS) // a second takeover or a duplicate replay would show by now

  const takeovers = await metricSum(peers, 'spotgate_lease_takeovers_total')
  const moved = await metricSum(peers, 'spotgate_lease_takeover_requests_total')
  const done = await metricSum(peers, 'spotgate_replays_total{outcome="done"}')
  const perPeer = await Promise.all(peers.map((p) => metric(p, 'spotgate_replays_total{outcome="done"}')))
  t.diagnostic(`${unfinished} unfinished at the kill; takeovers ${takeovers}, requests moved ${moved}, replays done per peer ${perPeer.join(' + ')}`)
  assert.equal(takeovers, 1, 'exactly one peer took the dead instance over')
  assert.equal(moved, unfinished)
  assert.equal(done, unfinished, 'each unfinished request was replayed to completion exactly once')
})

test('an instance paused past its lease comes back: one stored answer, it logs the lost lease and keeps serving', async (t) => {
  const [sleeper, peer] = await fleet(t, 2)
  await sleep(LEASE_TTL_MS) // past its first lease renewal (the next test covers a pause before it)
  const id = 'paused-owner'
  const body = spinBody(spinIterations(800), { id })
  const accepted = await sleeper.post('/v2/models/spin/infer', body, keyed(id, true))
  assert.equal(accepted.status, 202, await accepted.text())
  await waitInflight(sleeper, 'spin')
  // Frozen at once, so its run cannot end before the peer takes it over, however slow the machine.
  sleeper.signal('SIGSTOP')
  t.after(() => sleeper.signal('SIGCONT'))

  // Count the completions the journal publishes for this request: it publishes when an
  // answer is stored (never when one already was) and someone waits, which this test does.
  const keys = journalKeys(peer.env.JOURNAL_NAMESPACE as string, 1)
  const subscriber = redis.client()
  t.after(() => subscriber.disconnect())
  const published: string[] = []
  subscriber.on('message', (_channel: string, message: string) => published.push(message))
  await subscriber.subscribe(keys.channel(id))
  const marker = redis.client()
  t.after(() => marker.disconnect())
  await marker.set(keys.waiter(id), '1', 'PX', 60_000)
  await marker.set(keys.partitionOf(id).waiterPrefix, '1', 'PX', 60_000)

  const answer = await pollAnswer([peer], id, { timeoutMs: 20_000 })
  assert.equal(answer.status, 200, answer.text)
  assert.equal(await metric(peer, 'spotgate_lease_takeovers_total'), 1)

  sleeper.signal('SIGCONT')
  await sleeper.waitForLog(/lease had expired/, 10_000)
  // Its own run of the request finishes now; the journal keeps the first answer.
  const deadline = Date.now() + 20_000
  while (await metric(sleeper, 'spotgate_inflight_requests{model="spin"}') > 0) {
    assert.ok(Date.now() < deadline, 'the resumed instance finishes its run')
    await sleep(50)
  }
  await sleep(300)
  assert.deepEqual(published, ['final'], `exactly one answer was stored\n${peer.tail()}\n---\n${sleeper.tail()}`)
  const stored = await pollAnswer([sleeper], id, { timeoutMs: 5000 })
  assert.equal(stored.status, 200)
  assert.deepEqual(output(stored.text).y, output(answer.text).y)
  assert.equal(await metric(sleeper, 'spotgate_lease_lost_total'), 1)

  // It keeps serving, under a valid lease again: its new work is not taken from it.
  const ready = await waitUntil(async () => (await sleeper.fetch('/health/ready')).status === 200, 5_000)
  assert.ok(ready, `ready again after the pause\n${sleeper.tail()}`)
  const fresh = await sleeper.post('/v2/models/spin/infer', spinBody(spinIterations(100), { id: 'after-pause' }), keyed('after-pause'))
  assert.equal(fresh.status, 200, await fresh.text())
  await sleep(LEASE_TTL_MS * 1.5)
  assert.equal(await metric(peer, 'spotgate_lease_takeovers_total'), 1, 'no second takeover of the resumed instance')
})

test('an instance paused before its first lease renewal also notices, when it comes back, that its lease expired', async (t) => {
  // A longer lease, so the first renewal (a third of it after start) comes well after
  // ready, even on a machine slow enough to take seconds to load the model.
  const leaseTtlMs = 9000
  const [sleeper, peer] = await startFleet(t, 2, { redis, namespace: namespace(), modelRepository: repo.dir, leaseTtlMs })
  const id = 'paused-early'
  const accepted = await sleeper.post('/v2/models/spin/infer', spinBody(spinIterations(600), { id }), keyed(id, true))
  assert.equal(accepted.status, 202, await accepted.text())
  sleeper.signal('SIGSTOP')
  t.after(() => sleeper.signal('SIGCONT'))
  const sinceStart = Date.now() - sleeper.lines[0].at
  assert.ok(sinceStart < leaseTtlMs / 3 - 100, `paused ${sinceStart} ms after start: past the first renewal, so this run does not test the window`)

  const deadline = Date.now() + 15_000
  while (await metric(peer, 'spotgate_lease_takeovers_total') < 1) {
    assert.ok(Date.now() < deadline, 'the peer took the paused instance over')
    await sleep(50)
  }
  sleeper.signal('SIGCONT')
  t.diagnostic(`paused ${sinceStart} ms after start, resumed after the peer took it over`)
  await sleeper.waitForLog(/lease had expired/, leaseTtlMs)
  assert.equal(await metric(sleeper, 'spotgate_lease_lost_total'), 1)
  const answer = await pollAnswer([peer, sleeper], id, { timeoutMs: 20_000 })
  assert.equal(answer.status, 200, answer.text)
})
