import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { FakeAws, FakeAzure, FakeGcp, isoSeconds, scheduledEvent } from '../helpers/fake-clouds.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository, type ModelRepository } from '../helpers/model-repo.js'
import { RedisServer } from '../helpers/redis-server.js'
import { spinBody, spinIterations } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'

// Each notice source drives a real gateway process from notice to exit 0:
// readiness flips at once, work in flight finishes, the process exits cleanly.

const ADMIN_TOKEN = 'drain-test-token'
const DRAIN = { NOTICE_POLL_INTERVAL_MS: '100', DRAIN_GRACE_MS: '300', DRAIN_TIMEOUT_MS: '4000', DRAIN_SAFETY_MARGIN_MS: '1000', ADMIN_TOKEN }

let repo: ModelRepository
let redis: RedisServer

before(async () => {
  repo = await makeRepository(['spin'])
  redis = await RedisServer.start()
})

after(async () => {
  await redis.stop()
  await repo.cleanup()
})

async function startGateway (t: Parameters<typeof GatewayProcess.start>[0], env: Record<string, string>): Promise<GatewayProcess> {
  const gateway = await GatewayProcess.start(t, {
    env: { MODEL_REPOSITORY: repo.dir, REDIS_URL: redis.url, JOURNAL_NAMESPACE: `drain-${Math.random().toString(36).slice(2)}`, ...DRAIN, ...env }
  })
  await gateway.waitReady()
  return gateway
}

/** Milliseconds until /health/ready answers 503, polling every 10 ms. */
async function timeUntilUnready (gateway: GatewayProcess, from: number, timeoutMs = 5000): Promise<number> {
  const deadline = from + timeoutMs
  while (Date.now() < deadline) {
    const response = await gateway.fetch('/health/ready').catch(() => undefined)
    if (response?.status === 503) return Date.now() - from
    await sleep(10)
  }
  throw new Error(`readiness did not flip within ${timeoutMs} ms\n${gateway.tail()}`)
}

/** Starts an inference of about `ms` and returns its response promise. */
function inFlight (gateway: GatewayProcess, ms: number, key: string): Promise<Response> {
  return gateway.post('/v2/models/spin/infer', spinBody(spinIterations(ms)), { headers: { 'idempotency-key': key } })
}

async function expectDrainToExit (gateway: GatewayProcess, trigger: () => Promise<void> | void, pollMs: number): Promise<void> {
  const pending = inFlight(gateway, 600, `inflight-${gateway.port}`)
  await gateway.waitForLog((line) => line.json?.msg === 'ready' || line.text.includes('"ready"'), 1000).catch(() => {})
  await sleep(100)
  const noticeAt = Date.now()
  await trigger()
  const flipMs = await timeUntilUnready(gateway, noticeAt)
  assert.ok(flipMs < pollMs + 250, `readiness flipped after ${flipMs} ms`)
  assert.equal((await gateway.fetch('/health/live')).status, 200, 'liveness stays 200 while draining')

  const answer = await pending
  assert.equal(answer.status, 200, 'the request in flight at the notice is answered')

  const exit = await gateway.waitExit(10_000)
  assert.deepEqual(exit, { code: 0, signal: null }, gateway.tail())
  const messages = gateway.logs.map((l) => l.msg)
  for (const phase of ['preemption notice received', 'readiness flipped to 503; draining', 'listener closed; new requests get 503', 'drained; exiting']) {
    assert.ok(messages.includes(phase), `log line "${phase}" missing\n${gateway.tail(30)}`)
  }
}

describe('drain from every notice source', { timeout: 90_000 }, () => {
  test('SIGTERM: readiness flips at once, in-flight work finishes, exit 0', async (t) => {
    const gateway = await startGateway(t, { PREEMPTION_SOURCES: 'none' })
    await expectDrainToExit(gateway, () => gateway.signal('SIGTERM'), 0)
    assert.equal(gateway.logs.find((l) => l.msg === 'preemption notice received')?.source, 'sigterm')
  })

  test('POST /admin/drain needs the bearer token, then drains like a notice', async (t) => {
    const gateway = await startGateway(t, { PREEMPTION_SOURCES: 'none' })
    const refused = await gateway.fetch('/admin/drain', { method: 'POST', headers: { authorization: 'Bearer wrong' } })
    assert.equal(refused.status, 401)
    assert.equal((await gateway.fetch('/health/ready')).status, 200, 'a refused drain changes nothing')
    await expectDrainToExit(gateway, async () => {
      const accepted = await gateway.fetch('/admin/drain', { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      assert.equal(accepted.status, 202)
    }, 0)
  })

  test('admin routes do not exist without ADMIN_TOKEN', async (t) => {
    const gateway = await startGateway(t, { PREEMPTION_SOURCES: 'none', ADMIN_TOKEN: '' })
    const response = await gateway.fetch('/admin/drain', { method: 'POST', headers: { authorization: 'Bearer anything' } })
    assert.equal(response.status, 404)
  })

  test('AWS spot instance-action drains, with the notice time as the deadline', async (t) => {
    const aws = await FakeAws.start()
    t.after(() => aws.close())
    const gateway = await startGateway(t, { PREEMPTION_SOURCES: 'aws', AWS_METADATA_URL: aws.url })
    await expectDrainToExit(gateway, () => aws.setSpotInstanceAction({ action: 'terminate', time: isoSeconds(Date.now() + 6000) }), 100)
    const notice = gateway.logs.find((l) => l.msg === 'preemption notice received')
    assert.equal(notice?.source, 'aws')
    const flipped = gateway.logs.find((l) => l.msg === 'readiness flipped to 503; draining')
    const deadline = Date.parse(String(flipped?.deadline))
    assert.ok(deadline < Date.now() + 6000, 'the deadline comes from the notice time minus the safety margin, not DRAIN_TIMEOUT_MS')
    assert.ok(aws.requests.every((r) => r.path === '/latest/api/token' || typeof r.headers['x-aws-ec2-metadata-token'] === 'string'), 'every GET carries the IMDSv2 token')
  })

  test('an unparsable AWS notice is an error, not a drain', async (t) => {
    const aws = await FakeAws.start()
    t.after(() => aws.close())
    const gateway = await startGateway(t, { PREEMPTION_SOURCES: 'aws', AWS_METADATA_URL: aws.url })
    aws.setSpotInstanceActionBody('{"action": "terminate", "time": "not a time"}')
    await sleep(800)
    aws.setSpotInstanceActionBody('<html>captive portal</html>')
    await sleep(800)
    assert.equal((await gateway.fetch('/health/ready')).status, 200, gateway.tail())
    assert.equal(gateway.exitStatus, undefined, 'the gateway keeps running')
    const metrics = await (await gateway.fetch('/metrics')).text()
    assert.match(metrics, /spotgate_notice_source_errors_total\{source="aws"\} [1-9]/)
    assert.doesNotMatch(metrics, /spotgate_preemption_notices_total\{source="aws"\}/)
  })

  test('GCP preempted (long-polled) drains', async (t) => {
    const gcp = await FakeGcp.start()
    t.after(() => gcp.close())
    const gateway = await startGateway(t, { PREEMPTION_SOURCES: 'gcp', GCP_METADATA_URL: gcp.url })
    await expectDrainToExit(gateway, () => gcp.setPreempted(true), 0)
    assert.equal(gateway.logs.find((l) => l.msg === 'preemption notice received')?.source, 'gcp')
    assert.ok(gcp.requests.some((r) => r.query.get('wait_for_change') === 'true'), 'the source long-polls')
  })

  test('Azure Preempt for this VM drains and is acknowledged; events for other VMs are ignored', async (t) => {
    const azure = await FakeAzure.start({ vmName: 'spot-vm-7' })
    t.after(() => azure.close())
    const gateway = await startGateway(t, { PREEMPTION_SOURCES: 'azure', AZURE_METADATA_URL: azure.url })
    azure.setEvents([scheduledEvent({ EventType: 'Preempt', Resources: ['spot-vm-8'] })])
    await sleep(600)
    assert.equal((await gateway.fetch('/health/ready')).status, 200, 'another VM\'s event does not drain this one')

    const mine = scheduledEvent({ EventType: 'Preempt', Resources: ['spot-vm-7'], NotBefore: new Date(Date.now() + 30_000).toUTCString() })
    await expectDrainToExit(gateway, () => azure.setEvents([mine]), 100)
    assert.deepEqual(azure.startRequests, [mine.EventId], 'the event is approved once the instance has drained')
  })

  test('a second SIGTERM hands off what is left and exits at once', async (t) => {
    const peer = await startGateway(t, { PREEMPTION_SOURCES: 'none', INSTANCE_ID: 'second-signal-peer' })
    const gateway = await GatewayProcess.start(t, {
      env: { MODEL_REPOSITORY: repo.dir, REDIS_URL: redis.url, JOURNAL_NAMESPACE: peer.env.JOURNAL_NAMESPACE, ...DRAIN, DRAIN_TIMEOUT_MS: '20000', PREEMPTION_SOURCES: 'none' }
    })
    await gateway.waitReady()
    const pending = inFlight(gateway, 1500, 'second-signal')
    await sleep(300)
    gateway.signal('SIGTERM')
    await timeUntilUnready(gateway, Date.now())
    await sleep(100)
    const signalledAt = Date.now()
    gateway.signal('SIGTERM')
    const answer = await pending
    assert.equal(answer.status, 503)
    assert.equal(answer.headers.get('location'), '/infer/second-signal')
    assert.ok(answer.headers.get('retry-after') !== null)
    const exit = await gateway.waitExit(10_000)
    assert.equal(exit.code, 0, gateway.tail())
    // The run in progress cannot be interrupted, so exit waits for it to end (its request is already handed off).
    assert.ok(Date.now() - signalledAt < allow(7000), 'exit follows the second signal, not the 20 s deadline')

    const polled = await peer.fetch('/infer/second-signal?wait=8000')
    assert.equal(polled.status, 200, 'a peer finishes the handed-off request')
  })

  test('a signal while the last model run finishes after the deadline still exits 0', async (t) => {
    const gateway = await startGateway(t, { PREEMPTION_SOURCES: 'none', DRAIN_GRACE_MS: '0', DRAIN_TIMEOUT_MS: '500' })
    const pending = inFlight(gateway, 2500, 'overrun')
    await sleep(200)
    gateway.signal('SIGTERM')
    const answer = await pending
    assert.equal(answer.status, 503, 'the run outlasting the deadline is handed off')
    await gateway.waitForLog('lease released', 5000)
    // Exit now waits for the onnxruntime run, which cannot be interrupted; a signal meanwhile must not kill the process.
    gateway.signal('SIGTERM')
    const exit = await gateway.waitExit(10_000)
    assert.deepEqual(exit, { code: 0, signal: null }, gateway.tail())
  })

  test('a notice during start-up exits 0 without serving', async (t) => {
    const gateway = await GatewayProcess.start(t, {
      env: { MODEL_REPOSITORY: repo.dir, REDIS_URL: redis.url, ...DRAIN, PREEMPTION_SOURCES: 'none' }
    })
    await gateway.waitForLog((line) => typeof line.json?.msg === 'string' && (line.json.msg as string).startsWith('Server listening'), 10_000)
    gateway.signal('SIGTERM')
    const exit = await gateway.waitExit(10_000)
    assert.equal(exit.code, 0, gateway.tail())
  })

  test('a notice while Redis is down still drains and exits 0', async (t) => {
    const outage = await RedisServer.start()
    t.after(() => outage.stop())
    const gateway = await GatewayProcess.start(t, {
      env: { MODEL_REPOSITORY: repo.dir, REDIS_URL: outage.url, ...DRAIN, PREEMPTION_SOURCES: 'none', REDIS_COMMAND_TIMEOUT_MS: '300' }
    })
    await gateway.waitReady()
    await outage.kill()
    gateway.signal('SIGTERM')
    const exit = await gateway.waitExit(15_000)
    assert.equal(exit.code, 0, gateway.tail())
  })
})
