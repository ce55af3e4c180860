import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { writeSpin } from '../../scripts/models/catalog.js'
import type { GatewayProcess, LogLine } from '../helpers/gateway-process.js'
import { keyed, metricSum, namespace, pollAnswer, startInstance, startRedis, waitInflight, type FleetSettings } from '../helpers/fleet.js'
import { makeRepository } from '../helpers/model-repo.js'
import { spinBody, spinIterations } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'
import { readJournal } from '../../scripts/lib/journal-records.js'

// The README's "The journal and the guarantee", items 2 and 4: work handed off at a drain deadline is replayed by a peer;
// a replayer that dies mid-replay has its claim taken over; a request that fails every
// replay is marked failed after REPLAY_MAX_ATTEMPTS instead of circulating forever.

const LEASE_TTL_MS = 1000

const redis = await startRedis(after)
const repo = await makeRepository(['spin'])
after(repo.cleanup)

async function fleet (t: Parameters<typeof startInstance>[0], members: Array<{ name: string, env?: Record<string, string>, modelRepository?: string }>, shared: Partial<FleetSettings> = {}): Promise<GatewayProcess[]> {
  const settings: FleetSettings = { redis, namespace: namespace(), modelRepository: repo.dir, leaseTtlMs: LEASE_TTL_MS, ...shared }
  const gateways = await Promise.all(members.map((m) => startInstance(t, { ...settings, modelRepository: m.modelRepository ?? settings.modelRepository, env: { ...settings.env, ...m.env } }, m.name)))
  await Promise.all(gateways.map((g) => g.waitReady(30_000)))
  return gateways
}

const replaying = (id: string) => (line: LogLine): boolean => line.json?.msg === 'replaying a handed-off request' && line.json.requestId === id

test('a drain deadline shorter than the work: the client gets 503 with Location and Retry-After, and a peer completes it', async (t) => {
  const [owner, ...peers] = await fleet(t, [
    { name: 'owner', env: { DRAIN_GRACE_MS: '0', DRAIN_TIMEOUT_MS: '500' } },
    { name: 'peer-a' },
    { name: 'peer-b' }
  ])
  const id = 'deadline-handoff'
  const client = owner.post('/v2/models/spin/infer', spinBody(spinIterations(1500), { id }), { ...keyed(id), signal: AbortSignal.timeout(20_000) })
  await waitInflight(owner, 'spin')
  const signalledAt = Date.now()
  owner.signal('SIGTERM')

  const response = await client
  const answeredMs = Date.now() - signalledAt
  const body = await response.json() as { status?: string }
  assert.equal(response.status, 503)
  assert.equal(response.headers.get('location'), `/infer/${id}`)
  assert.match(response.headers.get('retry-after') ?? '', /^\d+$/)
  assert.equal(body.status, 'handed_off')
  assert.ok(answeredMs < allow(3000), `the client was answered at the deadline, not after the run (${answeredMs} ms after SIGTERM)`)
  assert.deepEqual(await owner.waitExit(10_000), { code: 0, signal: null }, owner.tail())

  // Poll the Location on both peers: the one not running it reads the journal's state.
  const answer = await pollAnswer(peers, id, { timeoutMs: 30_000, waitMs: 0, everyMs: 20 })
  t.diagnostic(`503 ${answeredMs} ms after SIGTERM; states seen on the peers: ${answer.states.join(' → ')}; answered ${answer.at - signalledAt} ms after SIGTERM`)
  assert.equal(answer.status, 200, answer.text)
  assert.equal((JSON.parse(answer.text) as { id: string }).id, id)
  // A pending poll reports the hand-off; a replay fast enough is answered at the first poll.
  for (const state of answer.states) assert.ok(['handed_off', 'replaying', 'queued', 'running'].includes(state), `unexpected state ${state}`)
  assert.equal(await metricSum(peers, 'spotgate_replays_total{outcome="done"}'), 1)
  const { records } = await readJournal(redis, peers[0].env.JOURNAL_NAMESPACE as string, [id])
  assert.equal(records.get(id)?.attempts, 1, 'a peer claimed it once from the replay stream')
})

test('the replayer killed mid-replay: another instance takes the claim over and completes it, the death costing one attempt', async (t) => {
  // Two attempts: the one the dead replayer used and the survivor's.
  const [owner, ...peers] = await fleet(t, [
    { name: 'owner', env: { DRAIN_GRACE_MS: '0', DRAIN_TIMEOUT_MS: '200' } },
    { name: 'peer-a' },
    { name: 'peer-b' }
  ], { env: { REPLAY_MAX_ATTEMPTS: '2' } })
  const id = 'replayer-killed'
  const client = owner.post('/v2/models/spin/infer', spinBody(spinIterations(1500), { id }), keyed(id))
  await waitInflight(owner, 'spin')
  owner.signal('SIGTERM')
  assert.equal((await client).status, 503)

  const first = await Promise.any(peers.map(async (peer) => { await peer.waitForLog(replaying(id), 10_000); return peer }))
  const survivor = peers.find((p) => p !== first) as GatewayProcess
  await waitInflight(first, 'spin')
  const killedAt = Date.now()
  await first.kill()

  const answer = await pollAnswer([survivor], id, { timeoutMs: 30_000 })
  const claims = survivor.logs.filter((record) => record.msg === 'replaying a handed-off request' && record.requestId === id)
  const gaveUp = survivor.logs.some((record) => record.msg === 'replay gave up: marked failed' && record.requestId === id)
  t.diagnostic(`answered ${answer.status} by the survivor ${answer.at - killedAt} ms after the replayer was killed; its claims: attempts ${claims.map((c) => String(c.attempt)).join(', ')}${gaveUp ? '; it also gave up on the request' : ''}`)
  assert.equal(answer.status, 200, `one replayer death must not exhaust REPLAY_MAX_ATTEMPTS=2: ${answer.text}`)
  assert.equal((JSON.parse(answer.text) as { id: string }).id, id)
  // The journal's one answer is that one: a later poll, wherever it lands, gets it too.
  await sleep(200)
  const stored = await survivor.fetch(`/infer/${id}`)
  assert.equal(stored.status, 200, `the stored answer: ${await stored.clone().text()}`)
  assert.equal(await stored.text(), answer.text)
  assert.ok(!gaveUp, 'the survivor did not also mark the request failed')
  assert.ok(claims.length >= 1 && claims.every((c) => Number(c.attempt) === 2), `the survivor claimed it once, as attempt 2 (claims: ${claims.map((c) => String(c.attempt)).join(', ')})`)
})

test('a poison request that fails every replay is marked failed after REPLAY_MAX_ATTEMPTS, with the reason, and not replayed again', async (t) => {
  // Only the dying instance serves the `poison` model: on every peer each replay attempt errors.
  const dyingRepo = await makeRepository(['spin'])
  t.after(dyingRepo.cleanup)
  await writeSpin(dyingRepo.dir, 'poison')
  const maxAttempts = 2
  const [owner, ...peers] = await fleet(t, [
    { name: 'owner', modelRepository: dyingRepo.dir },
    { name: 'peer-a' },
    { name: 'peer-b' }
  ], { env: { REPLAY_MAX_ATTEMPTS: String(maxAttempts) } })
  const id = 'poison-pill'
  const accepted = await owner.post('/v2/models/poison/infer', spinBody(spinIterations(3000), { id }), keyed(id, true))
  assert.equal(accepted.status, 202, await accepted.text())
  const killedAt = Date.now()
  await owner.kill()

  const answer = await pollAnswer(peers, id, { timeoutMs: 40_000 })
  const tookMs = answer.at - killedAt
  t.diagnostic(`final answer ${answer.status} ${tookMs} ms after the owner died: ${answer.text}`)
  assert.equal(answer.status, 500, answer.text)
  const { error } = JSON.parse(answer.text) as { error: string }
  assert.match(error, new RegExp(`${maxAttempts} replay attempts`), 'the stored answer says why it failed')

  // Not replayed again: the attempt count stays put and the stream is empty.
  const client = redis.client()
  t.after(() => client.disconnect())
  const journalNamespace = peers[0].env.JOURNAL_NAMESPACE as string
  const errorsBefore = await metricSum(peers, 'spotgate_replays_total{outcome="error"}')
  await sleep(LEASE_TTL_MS * 3)
  assert.equal(await metricSum(peers, 'spotgate_replays_total{outcome="error"}'), errorsBefore, 'no replay attempt after it was marked failed')
  assert.ok(errorsBefore <= maxAttempts, `at most ${maxAttempts} failed attempts (saw ${errorsBefore})`)
  assert.equal(await metricSum(peers, 'spotgate_replays_total{outcome="gave_up"}'), 1)
  const journal = await readJournal(redis, journalNamespace, [id])
  assert.equal(journal.records.get(id)?.state, 'failed')
  assert.equal(journal.replayBacklog, 0, 'nothing left in the replay stream')
  const retry = await peers[0].fetch(`/infer/${id}`)
  assert.equal(retry.status, 500)
})
