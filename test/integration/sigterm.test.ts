import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository } from '../helpers/model-repo.js'
import { spinBody, spinIterations } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'

// Short drain settings, so a drain that waits out its grace period still fits the test's bounds.
const DRAIN_ENV = { DRAIN_GRACE_MS: '0', DRAIN_TIMEOUT_MS: '15000', DRAIN_SAFETY_MARGIN_MS: '0' }

async function startGateway (t: Parameters<typeof GatewayProcess.start>[0]): Promise<GatewayProcess> {
  const repo = await makeRepository(['spin', 'tabular'])
  t.after(repo.cleanup)
  const gateway = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: repo.dir, ...DRAIN_ENV } })
  await gateway.waitReady()
  return gateway
}

/** Polls /metrics until the spin model has a request in flight. */
async function waitInflight (gateway: GatewayProcess, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const text = await (await gateway.fetch('/metrics')).text()
    if (/^spotgate_inflight_requests\{model="spin"\} [1-9]/m.test(text)) return
    await sleep(20)
  }
  throw new Error(`no spin request in flight within ${timeoutMs} ms`)
}

test('SIGTERM during an inference lets it finish with 200, then the process exits 0', async (t) => {
  const gateway = await startGateway(t)
  const started = performance.now()
  const pending = gateway.post('/v2/models/spin/infer', spinBody(spinIterations(1000), { id: 'in-flight' }), { signal: AbortSignal.timeout(20_000) })
    .then(async (response) => ({ status: response.status, body: await response.text(), at: performance.now() }))
  await waitInflight(gateway)
  const signalledAt = performance.now()
  gateway.signal('SIGTERM')

  const answer = await pending
  assert.equal(answer.status, 200, answer.body)
  assert.equal(JSON.parse(answer.body).id, 'in-flight')
  assert.ok(answer.at - started > 500, 'the inference ran for its full length')
  const exit = await gateway.waitExit(15_000)
  const exitedAt = performance.now()
  assert.deepEqual(exit, { code: 0, signal: null }, gateway.tail())
  assert.ok(exitedAt >= answer.at, 'the process exits only after the answer was sent')
  t.diagnostic(`answered ${(answer.at - signalledAt).toFixed(0)} ms and exited ${(exitedAt - signalledAt).toFixed(0)} ms after SIGTERM`)
  await gateway.waitForLog(/SIGTERM/i, 1000) // the drain says why it started
})

test('SIGTERM with nothing in flight exits 0 promptly', async (t) => {
  const gateway = await startGateway(t)
  const response = await gateway.post('/v2/models/tabular/infer', {
    inputs: [
      { name: 'features', datatype: 'FP32', shape: [1, 3], data: [1, 1, 1] },
      { name: 'category', datatype: 'INT64', shape: [1, 1], data: [2] }
    ]
  })
  assert.equal(response.status, 200)
  await response.text()

  const signalledAt = performance.now()
  gateway.signal('SIGTERM')
  const exit = await gateway.waitExit(5000)
  const ms = performance.now() - signalledAt
  assert.deepEqual(exit, { code: 0, signal: null }, gateway.tail())
  t.diagnostic(`exited ${ms.toFixed(0)} ms after SIGTERM`)
  assert.ok(ms < allow(3000), `exit took ${ms.toFixed(0)} ms`)
})
