import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { runLoad, summarize } from '../../scripts/lib/client.js'
import { allServersUp, startHaproxy, type Haproxy } from '../../scripts/lib/haproxy.js'
import { waitUntil } from '../../scripts/lib/process.js'
import type { Cleanup } from '../helpers/app.js'
import { metric, metricSum, namespace, startFleet, startRedis } from '../helpers/fleet.js'
import { makeRepository } from '../helpers/model-repo.js'
import { spinBody, spinIterations } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'

// HAProxy (Debian's haproxy; .ci/run installs it) with the shipped
// deploy/haproxy/haproxy.cfg, loopback addresses substituted, in front of real gateways.

async function haproxyIn (t: Cleanup, servers: Array<{ name: string, address: string }>): Promise<Haproxy> {
  const dir = await mkdtemp(join(tmpdir(), 'spotgate-haproxy-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const haproxy = await startHaproxy(dir, servers)
  t.after(() => haproxy.stop())
  const allUp = await waitUntil(async () => allServersUp(await haproxy.stats(), servers.map((s) => s.name)), 10_000, 100)
  if (!allUp) {
    const rows = (await haproxy.stats()).filter((r) => r.pxname === 'gateways')
    assert.fail(`HAProxy did not mark every server UP on a passed check: ${JSON.stringify(rows.map((r) => [r.svname, r.status, r.check_status, r.last_chk]))}`)
  }
  return haproxy
}

test('a gateway drained under load is marked DOWN by HAProxy and no client request through it fails', async (t) => {
  const redis = await startRedis(t.after.bind(t))
  const repo = await makeRepository(['spin'])
  t.after(repo.cleanup)
  // DRAIN_GRACE_MS above HAProxy's detection time (fall 2 at a 250 ms fast interval after a 1 s check).
  const gateways = await startFleet(t, 3, {
    redis,
    namespace: namespace(),
    modelRepository: repo.dir,
    leaseTtlMs: 2000,
    env: { DRAIN_GRACE_MS: '3000', DRAIN_TIMEOUT_MS: '3500', IDEMPOTENCY_WAIT_MS: '5000' }
  }, ['g1', 'g2', 'g3'])
  const haproxy = await haproxyIn(t, gateways.map((g, i) => ({ name: `g${i + 1}`, address: `127.0.0.1:${g.port}` })))
  const victim = gateways[1]

  // Three clients per gateway: one request running and two queued on each. A queued
  // request that cannot finish before the deadline is handed off at once; its client's
  // 503 is HAProxy's to retry.
  const load = runLoad({
    baseUrl: haproxy.url,
    concurrency: 9,
    durationMs: 8000,
    requestDeadlineMs: 25_000,
    keyPrefix: `haproxy-${namespace()}`,
    body: () => ({ model: 'spin', ...spinBody(spinIterations(1500)) })
  })
  await sleep(1500)
  const queued = await waitUntil(async () => await metric(victim, 'spotgate_queue_depth{model="spin",version="1"}') >= 2, 5000, 10)
  const signalledAt = Date.now()
  victim.signal('SIGTERM')
  let downAfterMs: number | undefined
  await waitUntil(async () => {
    const status = (await haproxy.row('g2'))?.status ?? ''
    if (status.startsWith('DOWN') || status.startsWith('MAINT')) downAfterMs = Date.now() - signalledAt
    return downAfterMs !== undefined
  }, 10_000, 50)
  // Still within its grace period: the victim answers /metrics.
  const handedOff = await metric(victim, 'spotgate_handoffs_total{reason="drain"}')

  const results = await load
  const exit = await victim.waitExit(20_000)
  const rows = await haproxy.stats()
  const backend = rows.find((r) => r.pxname === 'gateways' && r.svname === 'BACKEND')
  const survivors = gateways.filter((g) => g !== victim)
  const s = summarize(results)
  t.diagnostic(`${s.sent} requests; marked DOWN ${downAfterMs ?? '?'} ms after SIGTERM; handed off ${handedOff}; HAProxy retries ${backend?.wretr} redispatches ${backend?.wredis}; ` +
    `polled ${s.polled}; re-sent by the client ${s.retriedByClient}; replayed by peers ${await metricSum(survivors, 'spotgate_replays_total{outcome="done"}')}`)

  assert.ok(queued, 'the victim had queued requests when it was signalled')
  assert.ok(handedOff >= 1, 'the drain handed the queued requests that could not finish in time to the peers')
  assert.ok(Number(backend?.wretr) >= handedOff, `HAProxy retried the handed-off requests' 503s (${backend?.wretr} retries, ${handedOff} handed off)`)
  assert.ok(downAfterMs !== undefined, 'HAProxy marks the draining gateway DOWN')
  assert.ok(downAfterMs < allow(3000), `marked DOWN within the drain's grace period (${downAfterMs} ms)`)
  assert.deepEqual(exit, { code: 0, signal: null }, victim.tail())
  for (const name of ['g1', 'g3']) assert.equal(rows.find((r) => r.pxname === 'gateways' && r.svname === name)?.status, 'UP', `${name} stays UP`)
  assert.ok(s.sent >= 10, `a real load went through (${s.sent} requests)`)
  const unanswered = results.filter((r) => r.ending !== 'answered').map((r) => `${r.key}: ${r.ending} ${JSON.stringify(r.trail)}`)
  assert.deepEqual(unanswered, [], 'every logical request ends with 200')
  for (const r of results) assert.ok(Array.isArray((r.answer as { outputs?: unknown }).outputs), `${r.key} has outputs`)
})

test('HAProxy sends a 503 to another server only for requests with an Idempotency-Key, and for GET', async (t) => {
  // Two servers that are healthy but refuse every other request with 503, counting what they get.
  const hits: string[] = []
  const servers: Server[] = []
  for (let i = 0; i < 2; i++) {
    const server = createServer((req, res) => {
      req.resume()
      if (req.url === '/health/ready') {
        res.end('{"ready":true}')
        return
      }
      hits.push(`${req.method} ${req.headers['idempotency-key'] === undefined ? 'no-key' : 'key'}`)
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' }).end('{"error":"draining"}')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    servers.push(server)
    t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  }
  const haproxy = await haproxyIn(t, servers.map((s, i) => ({ name: `s${i + 1}`, address: `127.0.0.1:${(s.address() as AddressInfo).port}` })))
  const post = (headers: Record<string, string>): Promise<Response> =>
    fetch(`${haproxy.url}/infer`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"model":"m","inputs":[]}' })

  const attempts = async (send: () => Promise<Response>): Promise<number> => {
    hits.length = 0
    const response = await send()
    await response.arrayBuffer()
    assert.equal(response.status, 503, 'the last 503 reaches the client')
    return hits.length
  }
  // retries 3: the first attempt and three more, each on the other server (redispatch).
  assert.equal(await attempts(() => post({ 'idempotency-key': 'k-1' })), 4, 'keyed POST retried')
  assert.equal(await attempts(() => post({})), 1, 'POST without a key not retried')
  assert.equal(await attempts(() => fetch(`${haproxy.url}/infer/some-id`)), 4, 'GET retried')
})
