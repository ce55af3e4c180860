import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { readJournal } from '../../scripts/lib/journal-records.js'
import { metric, startRedis, waitInflight } from '../helpers/fleet.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository } from '../helpers/model-repo.js'
import { spinBody, spinIterations } from '../helpers/requests.js'

// A completion can fail while the connection stays healthy: here Redis refuses writes
// for a moment (maxmemory reached, OOM) and keeps answering reads at once, so the health
// probe never sees an outage and no recovery follows. The kept result must still be stored once writes go
// through again, by this instance, before its orphan sweep would hand the request to
// a replay (5 s).

test('a result kept after a failed completion is stored once Redis takes writes again, with no outage in between', async (t) => {
  const redis = await startRedis(t.after.bind(t))
  const repo = await makeRepository(['spin'])
  t.after(repo.cleanup)
  const namespace = `retry-${randomUUID().slice(0, 8)}`
  const gateway = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: repo.dir, REDIS_URL: redis.url, JOURNAL_NAMESPACE: namespace, REDIS_COMMAND_TIMEOUT_MS: '300' } })
  await gateway.waitReady(30_000)
  const admin = redis.client()
  t.after(() => admin.disconnect())

  const id = `kept-${randomUUID()}`
  const answer = gateway.post('/v2/models/spin/infer', spinBody(spinIterations(600)), { headers: { 'idempotency-key': id } })
  await waitInflight(gateway, 'spin')
  // Accepted and running: its completion comes while Redis refuses writes.
  await admin.config('SET', 'maxmemory-policy', 'noeviction')
  await admin.config('SET', 'maxmemory', '1')
  try {
    assert.equal((await answer).status, 200)
    await gateway.waitForLog(/could not store a result/, 5000)
  } finally {
    await admin.config('SET', 'maxmemory', '0')
  }

  let state: string | undefined
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    state = (await readJournal(admin, namespace, [id])).records.get(id)?.state ?? undefined
    if (state === 'done') break
    await sleep(100)
  }
  assert.equal(state, 'done', gateway.tail())
  assert.equal(await metric(gateway, 'spotgate_replays_total{outcome="done"}'), 0, 'stored by this instance, not replayed')
  assert.ok(!gateway.lines.some((l) => /handed off requests journaled here/.test(l.text)), 'no orphan hand-off')
})
