import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { JournalUnavailableError } from '../../src/journal/journal.js'
import { rawEntry, redisJournal } from '../helpers/redis-journal.js'
import { onlineReplicas, RedisCluster, RedisServer } from '../helpers/redis-server.js'
import { allow } from '../helpers/timing.js'

// JOURNAL_MIN_REPLICAS against real replicas: an accept counts only once a replica has
// it; a primary left without replicas refuses (503) the requests of its partitions, at
// once after the first shortfall, while the partitions of healthy shards keep serving;
// a replica that comes back restores them.

const OWNER = 'replicas-test'

async function degradedPartitions (metrics: { journalPartitionDegraded: { get: () => Promise<{ values: Array<{ value: number, labels: Record<string, unknown> }> }> } }): Promise<number[]> {
  const { values } = await metrics.journalPartitionDegraded.get()
  return values.filter((v) => v.value === 1).map((v) => Number(v.labels.partition)).sort((a, b) => a - b)
}

describe('one primary with one replica, JOURNAL_MIN_REPLICAS=1', () => {
  test('the replica gone: the accept is refused and taken back, later ones at once; the replica back: accepts again', async (t) => {
    const primary = await RedisServer.start(['--repl-diskless-sync-delay', '0'])
    t.after(() => primary.stop())
    const replica = await RedisServer.start(['--replicaof', '127.0.0.1', String(primary.port), '--repl-diskless-sync-delay', '0'])
    t.after(() => replica.stop())
    const deadline = Date.now() + 10_000
    while (await onlineReplicas(primary.port) < 1 && Date.now() < deadline) await sleep(50)
    assert.equal(await onlineReplicas(primary.port), 1, 'the replica is in sync before the test starts')
    const { journal, keys, metrics } = await redisJournal(t, primary.url, { instanceId: OWNER, minReplicas: 1, replicaTimeoutMs: 300 })
    assert.deepEqual(await journal.accept(rawEntry(randomUUID(), OWNER)), { accepted: true })

    await replica.kill()
    const refusedId = randomUUID()
    const started = performance.now()
    await assert.rejects(journal.accept(rawEntry(refusedId, OWNER)), (error: Error) => error instanceof JournalUnavailableError && /1 Redis replica/.test(error.message))
    const firstRefusal = performance.now() - started
    t.diagnostic(`first refusal after ${firstRefusal.toFixed(0)} ms (JOURNAL_REPLICA_TIMEOUT_MS 300)`)
    assert.ok(firstRefusal >= 250 && firstRefusal < allow(1500), `refused after ${firstRefusal.toFixed(0)} ms`)
    const admin = primary.client()
    t.after(() => admin.disconnect())
    assert.equal(await admin.exists(keys.record(refusedId)), 0, 'a refused accept is taken back, so no peer runs it')
    assert.deepEqual(await degradedPartitions(metrics), [0])
    assert.match(journal.unavailableReason() ?? '', /fewer than 1 Redis replica/, 'its only partition degraded: the instance cannot accept anything')

    const again = performance.now()
    await assert.rejects(journal.accept(rawEntry(randomUUID(), OWNER)), JournalUnavailableError)
    assert.ok(performance.now() - again < allow(50), 'a degraded partition refuses without waiting for replicas')

    await replica.restart()
    const restoreDeadline = Date.now() + 15_000
    while (journal.unavailableReason() !== undefined && Date.now() < restoreDeadline) await sleep(50)
    assert.equal(journal.unavailableReason(), undefined, 'the replica back in sync restores the partition')
    assert.deepEqual(await degradedPartitions(metrics), [])
    assert.deepEqual(await journal.accept(rawEntry(randomUUID(), OWNER)), { accepted: true })
  })
})

describe('a three-primary cluster, JOURNAL_MIN_REPLICAS=1', () => {
  let cluster: RedisCluster
  before(async () => { cluster = await RedisCluster.start(3) })
  after(async () => { await cluster?.stop() })

  test('a shard without its replica refuses its partitions; the others serve and the instance stays ready', async (t) => {
    const { journal, keys, metrics } = await redisJournal(t, cluster.target, { instanceId: OWNER, partitions: 16, minReplicas: 1, replicaTimeoutMs: 300 })
    const shardOf = await Promise.all(keys.partitions.map(async (p) => (await cluster.primaryFor(p.leases)).port))
    const victimPrimary = cluster.nodes.find((n) => n.port === shardOf[0]) as RedisServer
    const onVictim = keys.partitions.filter((_, i) => shardOf[i] === victimPrimary.port).map((p) => p.index)
    const [replica] = await cluster.replicasOf(victimPrimary)
    assert.ok(replica !== undefined, 'the shard has a replica')
    await replica.kill()

    // Ids over every partition: those on the replica-less shard are refused, the rest accepted.
    const ids = Array.from({ length: 200 }, (_, i) => `spread-${i}-${randomUUID()}`)
    const results = await Promise.allSettled(ids.map((id) => journal.accept(rawEntry(id, OWNER))))
    results.forEach((result, i) => {
      const partition = keys.partitionOf(ids[i]).index
      if (onVictim.includes(partition)) assert.ok(result.status === 'rejected' && result.reason instanceof JournalUnavailableError, `partition ${partition} is on the replica-less shard`)
      else assert.deepEqual(result.status === 'fulfilled' ? result.value : String(result.reason), { accepted: true }, `partition ${partition} is on a healthy shard`)
    })
    t.diagnostic(`partitions on the replica-less shard: ${onVictim.join(', ')}`)
    assert.deepEqual(await degradedPartitions(metrics), onVictim)
    assert.equal(journal.unavailableReason(), undefined, 'the instance can still accept work: readiness stays 200')

    await replica.restart()
    const deadline = Date.now() + 20_000
    while ((await degradedPartitions(metrics)).length > 0 && Date.now() < deadline) await sleep(100)
    assert.deepEqual(await degradedPartitions(metrics), [], 'the replica back restores every partition')
    const after = await Promise.all(ids.slice(0, 50).map((id) => journal.accept(rawEntry(`${id}-again`, OWNER))))
    assert.ok(after.every((r) => r.accepted))
  })
})
