import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type OpenAI from 'openai'
import { checkedBatch, openaiFor, submitBatch, waitForBatch, type ExpectedLine } from '../helpers/batches.js'
import { metric, metricSum, namespace, startFleet, startRedis } from '../helpers/fleet.js'
import type { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository } from '../helpers/model-repo.js'
import { RedisServer } from '../helpers/redis-server.js'
import { spinBody, spinIterations } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'

// The batch guarantee of docs/batches.md on a real fleet: whatever happens to the instances
// running a batch (SIGKILL, SIGSTOP past the lease, SIGTERM) or to Redis (a crash with
// AOF), every input line yields exactly one line across the output and error files.

const LEASE_TTL_MS = 1000
const LINES = 96
const LINE_MS = 30

const redis = await startRedis(after)
const repo = await makeRepository(['spin'])
after(repo.cleanup)
const storage = await mkdtemp(join(tmpdir(), 'spotgate-batch-fleet-'))
after(() => rm(storage, { recursive: true, force: true }))

const BATCH_ENV = {
  BATCH_SHARD_LINES: '8',
  BATCH_COMMIT_INTERVAL_MS: '100',
  BATCH_SHARDS_PER_INSTANCE: '1',
  BATCH_CONCURRENCY: '4',
  DRAIN_GRACE_MS: '200'
}

function spinBatch (prefix: string): { jsonl: string, expected: ExpectedLine[] } {
  const body = spinBody(spinIterations(LINE_MS))
  const expected = Array.from({ length: LINES }, (_, i) => ({ customId: `${prefix}-${i}` }))
  const jsonl = expected.map((line) => JSON.stringify({ custom_id: line.customId, method: 'POST', url: '/v2/models/spin/infer', body })).join('\n') + '\n'
  return { jsonl, expected }
}

async function fleet (t: Parameters<typeof startFleet>[0], count: number, server: RedisServer = redis): Promise<GatewayProcess[]> {
  return startFleet(t, count, { redis: server, namespace: namespace(), modelRepository: repo.dir, leaseTtlMs: LEASE_TTL_MS, env: { ...BATCH_ENV, BATCH_STORAGE_URL: `file://${storage}` } })
}

/** Waits until `gateway` holds a shard and has committed at least one part of it. */
async function midShard (gateway: GatewayProcess): Promise<void> {
  await gateway.waitForLog('claimed a batch shard', allow(20_000))
  const deadline = Date.now() + allow(20_000)
  while (await metric(gateway, 'spotgate_batch_lines_total{outcome="committed"}') < 1) {
    if (Date.now() > deadline) throw new Error(`no line committed by ${gateway.env.INSTANCE_ID}\n${gateway.tail()}`)
    await sleep(20)
  }
}

async function assertExactlyOnce (client: OpenAI, batchId: string, expected: readonly ExpectedLine[], clients: readonly OpenAI[]): Promise<void> {
  const batch = await waitForBatch(clients, batchId, allow(60_000))
  assert.equal(batch.status, 'completed', JSON.stringify(batch))
  const check = await checkedBatch(client, batch, expected)
  assert.deepEqual({ lost: check.lost, duplicated: check.duplicated, wrong: check.wrong, unknown: check.unknown }, { lost: [], duplicated: [], wrong: [], unknown: [] })
  assert.equal(check.answered, LINES, `every line answered (errors: ${JSON.stringify(check.errors.slice(0, 3))})`)
  assert.deepEqual(batch.request_counts, { total: LINES, completed: LINES, failed: 0 })
  assert.deepEqual(check.outputOrder, expected.map((line) => line.customId))
}

test('SIGKILL of an instance mid-shard: a peer takes the shard over after the lease and runs only the lines not committed', async (t) => {
  const gateways = await fleet(t, 3)
  const [victim, ...peers] = gateways
  const { jsonl, expected } = spinBatch('kill')
  const batch = await submitBatch(openaiFor(victim), jsonl, '/v2/models/spin/infer')
  await midShard(victim)
  const committedByVictim = await metric(victim, 'spotgate_batch_lines_total{outcome="committed"}')
  await victim.kill()
  const clients = peers.map((g) => openaiFor(g))
  await assertExactlyOnce(clients[0], batch.id, expected, clients)
  assert.ok(await metricSum(peers, 'spotgate_batch_shards_total{outcome="taken_over"}') >= 1, 'a peer took the dead instance\'s shard over')
  // Lines the victim committed are not run again: the peers committed the rest, and no more.
  const committedByPeers = await metricSum(peers, 'spotgate_batch_lines_total{outcome="committed"}')
  assert.ok(committedByVictim + committedByPeers >= LINES - 8 && committedByPeers <= LINES - committedByVictim, `victim ${committedByVictim}, peers ${committedByPeers}`)
})

test('SIGSTOP past the lease, then SIGCONT: the shard is taken over and the woken instance cannot commit into it', async (t) => {
  const gateways = await fleet(t, 3)
  const [sleeper, ...peers] = gateways
  const { jsonl, expected } = spinBatch('pause')
  const batch = await submitBatch(openaiFor(sleeper), jsonl, '/v2/models/spin/infer')
  await midShard(sleeper)
  sleeper.signal('SIGSTOP')
  try {
    await Promise.any(peers.map((peer) => peer.waitForLog('took over a batch shard whose holder went silent', allow(20_000))))
  } finally {
    sleeper.signal('SIGCONT')
  }
  const clients = gateways.map((g) => openaiFor(g))
  await assertExactlyOnce(clients[1], batch.id, expected, clients)
  await sleeper.waitForLog((line) => line.json?.msg === 'batch claim was taken over; stopping it here' || line.json?.msg === 'batch shard was taken over: its results here are dropped', allow(10_000))
  assert.ok(await metric(sleeper, 'spotgate_batch_shards_total{outcome="stale"}') >= 1, 'the woken claim was fenced (stale)')
})

test('SIGTERM during a batch: the instance commits what it finished, hands its shard back at once without an attempt, and exits 0', async (t) => {
  const gateways = await fleet(t, 2)
  const [leaver, stayer] = gateways
  const { jsonl, expected } = spinBatch('term')
  const batch = await submitBatch(openaiFor(leaver), jsonl, '/v2/models/spin/infer')
  await midShard(leaver)
  leaver.signal('SIGTERM')
  await leaver.waitForLog('handed a batch shard back', allow(10_000))
  const exit = await leaver.waitExit(allow(15_000))
  assert.equal(exit.code, 0)
  // Claimed as handed back (a new stream entry, no attempt used), not taken over after the leaver's lease.
  await stayer.waitForLog((line) => line.json?.msg === 'claimed a batch shard' && line.json.handedBack === true, allow(20_000))
  const client = openaiFor(stayer)
  await assertExactlyOnce(client, batch.id, expected, [client])
  assert.equal(await metric(stayer, 'spotgate_batch_shards_total{outcome="taken_over"}'), 0, 'a handed-back shard is no take-over')
})

test('a Redis crash with AOF (appendfsync always) mid-batch loses no committed line', async (t) => {
  const durable = await RedisServer.start(['--appendfsync', 'always'])
  t.after(() => durable.stop())
  const gateways = await fleet(t, 2, durable)
  const clients = gateways.map((g) => openaiFor(g))
  const { jsonl, expected } = spinBatch('aof')
  const batch = await submitBatch(clients[0], jsonl, '/v2/models/spin/infer')
  const before = await waitForBatch(clients, batch.id, allow(20_000), (b) => (b.request_counts?.completed ?? 0) >= 16)
  await durable.kill()
  await sleep(300)
  await durable.restart()
  const afterRestart = await waitForBatch(clients, batch.id, allow(20_000), () => true)
  assert.ok((afterRestart.request_counts?.completed ?? 0) >= (before.request_counts?.completed ?? 0), `committed before the crash: ${before.request_counts?.completed}, after: ${afterRestart.request_counts?.completed}`)
  await assertExactlyOnce(clients[0], batch.id, expected, clients)
  assert.ok(await metricSum(gateways, 'spotgate_batch_lines_total{outcome="committed"}') <= LINES, 'no line was committed twice')
})
