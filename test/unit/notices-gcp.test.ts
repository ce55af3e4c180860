import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { GcpNoticeSource, type GcpNoticeSourceOptions } from '../../src/lifecycle/notices/gcp.js'
import { createMetrics } from '../../src/metrics.js'
import { FakeGcp, GCP_PATHS, type Fault } from '../helpers/fake-clouds.js'
import { counterValue, memoryLogger, NoticeRecorder, waitFor } from '../helpers/notice-recorder.js'
import { allow } from '../helpers/timing.js'

const POLL_MS = 50

async function setup (t: TestContext, options: Partial<GcpNoticeSourceOptions> = {}) {
  const fake = await FakeGcp.start()
  const metrics = createMetrics()
  const { log, records } = memoryLogger()
  const source = new GcpNoticeSource({
    baseUrl: fake.url,
    pollIntervalMs: POLL_MS,
    log,
    metrics,
    retry: { initialMs: 20, maxMs: 100 },
    requestTimeoutMs: 2000,
    ...options
  })
  const recorder = new NoticeRecorder()
  t.after(async () => {
    await source.stop()
    await fake.close()
  })
  const errors = () => counterValue(metrics.noticeSourceErrors, { source: 'gcp' })
  // Both watches parked in a long-poll: the source is waiting for a change.
  const parked = () => waitFor(() => fake.heldLongPolls === 2, 5000, 'both long-polls to be held')
  return { fake, metrics, records, source, recorder, errors, parked }
}

describe('GCP notice source (metadata server long-poll)', () => {
  test('long-polls preempted and maintenance-event with Metadata-Flavor and the ETag, starting from last_etag=0', async (t) => {
    const { fake, source, recorder, parked } = await setup(t)
    source.start(recorder.emit)
    await parked()

    for (const path of [GCP_PATHS.preempted, GCP_PATHS.maintenanceEvent]) {
      const [first, second, ...rest] = fake.requestsTo(path)
      assert.equal(rest.length, 0, 'the second request is held, not repeated')
      assert.ok(first !== undefined && second !== undefined)
      for (const request of [first, second]) {
        assert.equal(request.headers['metadata-flavor'], 'Google')
        assert.equal(request.query.get('wait_for_change'), 'true')
        assert.equal(request.query.get('timeout_sec'), '60')
      }
      assert.equal(first.query.get('last_etag'), '0', 'the first call returns the current value at once')
      assert.equal(first.status, 200)
      assert.match(second.query.get('last_etag') ?? '', /^[0-9a-f]{16}$/, 'then it waits on the ETag it got')
      assert.equal(second.status, undefined, 'held until a change')
    }
    assert.equal(recorder.notices.length, 0, 'FALSE and NONE are no notice')
  })

  test('preempted TRUE is a notice within milliseconds, with the 30 s hard-off as deadline', async (t) => {
    const { fake, source, recorder, parked } = await setup(t)
    source.start(recorder.emit)
    await parked()
    const changedAt = Date.now()
    fake.setPreempted(true)
    const notice = await recorder.waitForCount(1, 1000)
    const delivering = fake.requestsTo(GCP_PATHS.preempted).find((r) => r.status === 200 && r.receivedAt <= changedAt && (r.answeredAt ?? 0) >= changedAt)
    assert.ok(delivering !== undefined, 'the held long-poll delivered it')
    assert.equal(notice.source, 'gcp')
    assert.equal(notice.kind, 'preempted')
    assert.ok(notice.deadline !== undefined && Math.abs(notice.deadline - (changedAt + 30_000)) < 500)
    await parked()
    assert.equal(recorder.notices.length, 1)
  })

  test('an instance already preempted at start is a notice', async (t) => {
    const { fake, source, recorder } = await setup(t)
    fake.setPreempted(true)
    source.start(recorder.emit)
    assert.equal((await recorder.waitForCount(1)).kind, 'preempted')
  })

  test('host maintenance that terminates is a notice; migration is not', async (t) => {
    const { fake, source, recorder, parked } = await setup(t)
    source.start(recorder.emit)
    await parked()
    fake.setMaintenanceEvent('MIGRATE_ON_HOST_MAINTENANCE')
    await parked()
    fake.setMaintenanceEvent('NONE')
    await parked()
    assert.equal(recorder.notices.length, 0)

    fake.setMaintenanceEvent('TERMINATE_ON_HOST_MAINTENANCE')
    const notice = await recorder.waitForCount(1)
    assert.equal(notice.kind, 'maintenance:TERMINATE_ON_HOST_MAINTENANCE')
    assert.equal(notice.deadline, undefined)

    fake.setMaintenanceEvent('SHUTDOWN_ON_HOST_MAINTENANCE')
    assert.equal((await recorder.waitForCount(2)).kind, 'maintenance:SHUTDOWN_ON_HOST_MAINTENANCE')
  })

  test('a long-poll that times out unchanged is not a change', async (t) => {
    const { fake, source, recorder, errors } = await setup(t, { longPollTimeoutSec: 1 })
    source.start(recorder.emit)
    await waitFor(() => fake.requestsTo(GCP_PATHS.preempted).filter((r) => r.status === 200).length >= 2, 2500, 'a timed-out long-poll')
    await waitFor(() => fake.requestsTo(GCP_PATHS.preempted).length >= 3, 1000, 'the next long-poll')
    const polls = fake.requestsTo(GCP_PATHS.preempted)
    assert.equal(polls[2]?.query.get('last_etag'), polls[1]?.query.get('last_etag'), 'the same ETag again')
    assert.equal(polls[2]?.query.get('wait_for_change'), 'true', 'still long-polling')
    assert.equal(recorder.notices.length, 0)
    assert.equal(await errors(), 0)
  })

  test('a server that ignores wait_for_change is polled every NOTICE_POLL_INTERVAL_MS, not hammered', async (t) => {
    const { fake, source, recorder, records } = await setup(t)
    fake.ignoreWaitForChange = true
    source.start(recorder.emit)
    await waitFor(() => records.filter((r) => String(r.msg).includes('polling instead')).length === 2, 5000, 'both watches to fall back')
    assert.ok(fake.requestsTo(GCP_PATHS.preempted).length <= 5, 'after a few long-polls that did not wait')
    const before = fake.requestsTo(GCP_PATHS.preempted).length
    await sleep(500)
    const requests = fake.requestsTo(GCP_PATHS.preempted)
    assert.ok(requests.length - before <= 500 / POLL_MS + 1, `${requests.length - before} requests in 500 ms`)
    assert.equal(requests.at(-1)?.query.get('wait_for_change'), null, 'plain polling')

    fake.setPreempted(true)
    assert.equal((await recorder.waitForCount(1)).kind, 'preempted')
  })

  test('a server that sends no ETag does not make the source spin', async (t) => {
    const { fake, source, recorder } = await setup(t)
    fake.omitEtag = true
    source.start(recorder.emit)
    await sleep(500)
    const requests = fake.requestsTo(GCP_PATHS.preempted)
    assert.ok(requests.length <= 500 / POLL_MS + 3, `${requests.length} requests in 500 ms`)
    fake.setPreempted(true)
    assert.equal((await recorder.waitForCount(1)).kind, 'preempted')
  })

  for (const [name, value] of [['garbage', '<html>captive portal</html>'], ['a lower-case value', 'true']] as const) {
    test(`${name} as the preempted value is an error, not a drain`, async (t) => {
      const { fake, source, recorder, errors, records } = await setup(t)
      fake.setValue('preempted', value)
      source.start(recorder.emit)
      await waitFor(async () => await errors() >= 1, 5000, 'the error')
      assert.equal(recorder.notices.length, 0)
      assert.ok(records.some((r) => r.level === 40 && String(r.msg).includes('preempted')))
    })
  }

  test('an unknown maintenance-event value is an error, not a drain', async (t) => {
    const { fake, source, recorder, errors } = await setup(t)
    fake.setMaintenanceEvent('SOMETHING_NEW')
    source.start(recorder.emit)
    await waitFor(async () => await errors() >= 1, 5000, 'the error')
    assert.equal(recorder.notices.length, 0)
  })

  for (const fault of [503, 500, 'garbage', 'hang', 'reset'] satisfies Fault[]) {
    test(`the source survives ${fault} from the metadata server and recovers`, async (t) => {
      const { fake, source, recorder, errors } = await setup(t, { longPollTimeoutSec: 1, longPollRequestTimeoutMs: 300 })
      fake.fail(fault, { times: 4 })
      source.start(recorder.emit)
      await waitFor(async () => await errors() >= 4, 5000, 'failures to be counted')
      assert.equal(recorder.notices.length, 0)
      fake.setPreempted(true)
      const notice = await recorder.waitForCount(1)
      assert.equal(notice.kind, 'preempted')
    })
  }

  test('stop() aborts a held long-poll at once', async (t) => {
    const { fake, source, recorder, parked } = await setup(t)
    source.start(recorder.emit)
    await parked()
    const started = Date.now()
    await source.stop()
    assert.ok(Date.now() - started < allow(200), `stop took ${Date.now() - started} ms`)
    await waitFor(() => fake.heldLongPolls === 0, 1000, 'the long-polls to be dropped')
    const held = fake.requests.filter((r) => r.aborted === true)
    assert.equal(held.length, 2, 'both long-polls were aborted by the client')
    const count = fake.requests.length
    await sleep(150)
    assert.equal(fake.requests.length, count, 'no request after stop()')
  })
})
