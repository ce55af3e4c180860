import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { keyed, namespace, startFleet, startRedis, waitInflight } from '../helpers/fleet.js'
import { makeRepository } from '../helpers/model-repo.js'
import { spinBody, spinIterations } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'

// The README's "Preemption and drain": a notice fails readiness at once, even when every core is busy with
// inference (it runs in worker threads, never on the event loop that answers probes).

const BUDGET_MS = allow(250)

const redis = await startRedis(after)

test(`SIGTERM flips readiness within ${BUDGET_MS} ms while spin keeps every core busy on two instances`, async (t) => {
  const repo = await makeRepository(['spin'], { spin: { instance_count: 2 } })
  t.after(repo.cleanup)
  const gateways = await startFleet(t, 2, {
    redis,
    namespace: namespace(),
    modelRepository: repo.dir,
    leaseTtlMs: 1000,
    env: { DRAIN_GRACE_MS: '2000', DRAIN_TIMEOUT_MS: '3000', LOG_LEVEL: 'warn' }
  })
  const [target] = gateways
  // Warm the probe path and its keep-alive connection, so the samples measure the server.
  for (let i = 0; i < 3; i++) assert.equal((await target.fetch('/health/ready')).status, 200)

  // Two long runs per instance: four worker threads on this machine's cores.
  const runs = gateways.flatMap((g, gi) => [0, 1].map((k) => g.post('/v2/models/spin/infer', spinBody(spinIterations(3000), { id: `busy-${gi}-${k}` }), { ...keyed(`busy-${gi}-${k}`), signal: AbortSignal.timeout(30_000) })
    .then((r) => r.status, () => 0)))
  await Promise.all(gateways.map((g) => waitInflight(g, 'spin', 2)))

  const signalledAt = performance.now()
  target.signal('SIGTERM')
  let flippedMs: number | undefined
  let probes = 0
  while (performance.now() - signalledAt < 2000) {
    const response = await target.fetch('/health/ready', { signal: AbortSignal.timeout(2000) })
    await response.arrayBuffer()
    probes++
    if (response.status === 503) {
      flippedMs = performance.now() - signalledAt
      break
    }
  }
  const live = await target.fetch('/health/live')
  t.diagnostic(`readiness 503 ${flippedMs?.toFixed(0) ?? 'never'} ms after SIGTERM (${probes} probes) with 4 spin runs in flight`)
  assert.ok(flippedMs !== undefined && flippedMs < BUDGET_MS, `readiness flipped after ${flippedMs?.toFixed(0) ?? '> 2000'} ms`)
  assert.equal(live.status, 200, 'still live while draining')
  // The drained instance's work goes to its peer; the rest is the other tests' business.
  void Promise.all(runs)
})
