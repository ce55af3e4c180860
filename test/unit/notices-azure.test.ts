import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { AzureNoticeSource, type AzureNoticeSourceOptions } from '../../src/lifecycle/notices/azure.js'
import { createMetrics } from '../../src/metrics.js'
import { AZURE_PATHS, FakeAzure, scheduledEvent, type Fault, type FakeAzureOptions } from '../helpers/fake-clouds.js'
import { counterValue, memoryLogger, NoticeRecorder, waitFor } from '../helpers/notice-recorder.js'
import { allow } from '../helpers/timing.js'

const POLL_MS = 50
const VM = 'spot-vm-1'

async function setup (t: TestContext, options: Partial<AzureNoticeSourceOptions> = {}, fakeOptions: FakeAzureOptions = {}) {
  const fake = await FakeAzure.start({ vmName: VM, ...fakeOptions })
  const metrics = createMetrics()
  const { log, records } = memoryLogger()
  const source = new AzureNoticeSource({
    baseUrl: fake.url,
    pollIntervalMs: POLL_MS,
    log,
    metrics,
    retry: { initialMs: 20, maxMs: 100 },
    requestTimeoutMs: 2000,
    eventsTimeoutMs: 2000,
    ...options
  })
  const recorder = new NoticeRecorder()
  t.after(async () => {
    await source.stop()
    await fake.close()
  })
  const errors = () => counterValue(metrics.noticeSourceErrors, { source: 'azure' })
  const polls = () => fake.requestsTo(AZURE_PATHS.scheduledEvents, 'GET').filter((r) => r.status === 200).length
  /** Waits for `n` more answered polls, so whatever was set before has been seen. */
  const pollsMore = async (n = 2) => {
    const seen = polls()
    await waitFor(() => polls() >= seen + n, 5000, `${n} more polls`)
  }
  return { fake, metrics, records, source, recorder, errors, polls, pollsMore }
}

const inOneMinute = () => new Date(Math.floor(Date.now() / 1000) * 1000 + 60_000).toUTCString()

describe('Azure notice source (Scheduled Events)', () => {
  test('asks for the VM name, then polls scheduled events, with Metadata: true and an api-version', async (t) => {
    const { fake, source, recorder, pollsMore } = await setup(t)
    source.start(recorder.emit)
    await pollsMore(3)
    const [name] = fake.requestsTo(AZURE_PATHS.computeName)
    assert.equal(name?.query.get('format'), 'text')
    assert.equal(name?.status, 200)
    for (const request of fake.requests) {
      assert.equal(request.headers.metadata, 'true', `${request.url} carries Metadata: true`)
      assert.ok(request.query.get('api-version') !== null, `${request.url} names an api-version`)
    }
    assert.equal(fake.requestsTo(AZURE_PATHS.scheduledEvents)[0]?.query.get('api-version'), '2020-07-01')
    assert.equal(recorder.notices.length, 0)
  })

  test('a Preempt event for this VM is a notice with NotBefore as deadline', async (t) => {
    const { fake, source, recorder } = await setup(t)
    const notBefore = inOneMinute()
    const event = scheduledEvent({ EventType: 'Preempt', Resources: [VM], NotBefore: notBefore })
    fake.setEvents([event])
    source.start(recorder.emit)
    const notice = await recorder.waitForCount(1)
    assert.equal(notice.source, 'azure')
    assert.equal(notice.kind, 'Preempt')
    assert.equal(notice.deadline, Date.parse(notBefore))
    assert.match(notice.description, new RegExp(event.EventId))
  })

  test('a Terminate event naming this VM among others is a notice; repeats are not', async (t) => {
    const { fake, source, recorder, pollsMore } = await setup(t)
    fake.setEvents([scheduledEvent({ EventType: 'Terminate', Resources: ['spot-vm-0', VM, 'spot-vm-2'], NotBefore: inOneMinute() })])
    source.start(recorder.emit)
    assert.equal((await recorder.waitForCount(1)).kind, 'Terminate')
    await pollsMore(3)
    assert.equal(recorder.notices.length, 1)
  })

  test('events for other VMs, and Reboot, Redeploy and Freeze for this one, are ignored', async (t) => {
    const { fake, source, recorder, pollsMore, errors } = await setup(t)
    fake.setEvents([
      scheduledEvent({ EventType: 'Preempt', Resources: ['spot-vm-2'] }),
      scheduledEvent({ EventType: 'Terminate', Resources: ['spot-vm-10', `${VM}0`] }),
      scheduledEvent({ EventType: 'Reboot', Resources: [VM] }),
      scheduledEvent({ EventType: 'Redeploy', Resources: [VM] }),
      scheduledEvent({ EventType: 'Freeze', Resources: [VM], DurationInSeconds: 5 })
    ])
    source.start(recorder.emit)
    await pollsMore(3)
    assert.equal(recorder.notices.length, 0)
    assert.equal(await errors(), 0)

    // Then this VM's own preemption shows up in the same document.
    fake.setEvents([scheduledEvent({ EventType: 'Preempt', Resources: ['spot-vm-2'] }), scheduledEvent({ EventType: 'Preempt', Resources: [VM] })])
    assert.equal((await recorder.waitForCount(1)).kind, 'Preempt')
  })

  test('a Started event with an empty NotBefore means now', async (t) => {
    const { fake, source, recorder } = await setup(t)
    fake.setEvents([scheduledEvent({ EventType: 'Preempt', Resources: [VM], EventStatus: 'Started', NotBefore: '' })])
    const started = Date.now()
    source.start(recorder.emit)
    const notice = await recorder.waitForCount(1)
    assert.ok(notice.deadline !== undefined && notice.deadline >= started && notice.deadline <= Date.now())
  })

  test('an event moved earlier is emitted again with the closer deadline', async (t) => {
    const { fake, source, recorder } = await setup(t)
    const event = scheduledEvent({ EventType: 'Preempt', Resources: [VM], NotBefore: inOneMinute() })
    fake.setEvents([event])
    source.start(recorder.emit)
    const first = await recorder.waitForCount(1)
    fake.setEvents([{ ...event, EventStatus: 'Started', NotBefore: '' }])
    const second = await recorder.waitForCount(2)
    assert.ok(second.deadline !== undefined && first.deadline !== undefined && second.deadline < first.deadline)
  })

  test('drained() acknowledges each acted-on event once with StartRequests, and no other event', async (t) => {
    const { fake, source, recorder } = await setup(t)
    const mine = scheduledEvent({ EventType: 'Preempt', Resources: [VM], NotBefore: inOneMinute() })
    const other = scheduledEvent({ EventType: 'Preempt', Resources: ['spot-vm-2'] })
    const reboot = scheduledEvent({ EventType: 'Reboot', Resources: [VM] })
    fake.setEvents([mine, other, reboot])
    source.start(recorder.emit)
    await recorder.waitForCount(1)

    await source.drained()
    await source.drained()
    assert.deepEqual(fake.startRequests, [mine.EventId])
    const [post, ...more] = fake.requestsTo(AZURE_PATHS.scheduledEvents, 'POST')
    assert.equal(more.length, 0, 'sent once')
    assert.equal(post?.status, 200)
    assert.equal(post?.headers.metadata, 'true')
    assert.match(String(post?.headers['content-type']), /^application\/json/)
    assert.deepEqual(JSON.parse(post?.body ?? ''), { StartRequests: [{ EventId: mine.EventId }] })
  })

  test('drained() logs a failed acknowledgement without throwing, and works after stop()', async (t) => {
    const { fake, source, recorder, records } = await setup(t)
    const mine = scheduledEvent({ EventType: 'Terminate', Resources: [VM], NotBefore: inOneMinute() })
    fake.setEvents([mine])
    source.start(recorder.emit)
    await recorder.waitForCount(1)
    await source.stop()

    fake.fail(500, { path: AZURE_PATHS.scheduledEvents, method: 'POST', times: 1 })
    await source.drained()
    assert.deepEqual(fake.startRequests, [])
    assert.ok(records.some((r) => r.level === 40 && String(r.msg).includes('could not acknowledge')))

    await source.drained()
    assert.deepEqual(fake.startRequests, [mine.EventId], 'a failed acknowledgement is tried again on the next call')
  })

  test('drained() with nothing acted on sends nothing', async (t) => {
    const { fake, source, recorder, pollsMore } = await setup(t)
    source.start(recorder.emit)
    await pollsMore(1)
    await source.drained()
    assert.equal(fake.requestsTo(AZURE_PATHS.scheduledEvents, 'POST').length, 0)
  })

  test('the VM name is retried until the metadata service gives it', async (t) => {
    const { fake, source, recorder, errors } = await setup(t)
    fake.fail(503, { path: AZURE_PATHS.computeName, times: 3 })
    fake.setEvents([scheduledEvent({ EventType: 'Preempt', Resources: [VM], NotBefore: inOneMinute() })])
    source.start(recorder.emit)
    assert.equal((await recorder.waitForCount(1)).kind, 'Preempt')
    assert.equal(fake.requestsTo(AZURE_PATHS.computeName).length, 4)
    assert.equal(await errors(), 3)
  })

  test('a slow first scheduled-events call blocks nothing, and stop() ends it at once', async (t) => {
    const { fake, source, recorder } = await setup(t, { eventsTimeoutMs: 150_000 }, { firstEventsCallDelayMs: 60_000 })
    const started = Date.now()
    source.start(recorder.emit)
    assert.ok(Date.now() - started < allow(100), 'start() returns at once')
    await waitFor(() => fake.requestsTo(AZURE_PATHS.scheduledEvents).length === 1, 5000, 'the first call')
    const stopping = Date.now()
    await source.stop()
    assert.ok(Date.now() - stopping < allow(200), `stop took ${Date.now() - stopping} ms`)
    await waitFor(() => fake.requestsTo(AZURE_PATHS.scheduledEvents)[0]?.aborted === true, 1000, 'the call to be aborted')
  })

  test('a slow first call is waited for, then polling goes on', async (t) => {
    const { fake, source, recorder } = await setup(t, { eventsTimeoutMs: 2000 }, { firstEventsCallDelayMs: 300 })
    fake.setEvents([scheduledEvent({ EventType: 'Preempt', Resources: [VM], NotBefore: inOneMinute() })])
    source.start(recorder.emit)
    await recorder.waitForCount(1)
    const [first] = fake.requestsTo(AZURE_PATHS.scheduledEvents)
    assert.ok(first?.answeredAt !== undefined && first.answeredAt - first.receivedAt >= 290)
  })

  for (const [name, body] of [
    ['garbage', '<html>captive portal</html>'],
    ['a document without Events', '{"DocumentIncarnation": 3}']
  ] as const) {
    test(`${name} from scheduled events is an error, not a drain`, async (t) => {
      const { fake, source, recorder, errors } = await setup(t)
      fake.setEventsBody(body)
      source.start(recorder.emit)
      await waitFor(async () => await errors() >= 3, 5000, 'the errors')
      assert.equal(recorder.notices.length, 0)

      fake.setEvents([scheduledEvent({ EventType: 'Preempt', Resources: [VM], NotBefore: inOneMinute() })])
      assert.equal((await recorder.waitForCount(1)).kind, 'Preempt', 'and recovers')
    })
  }

  test('a Preempt for this VM with an unparsable NotBefore is an error, not a drain', async (t) => {
    const { fake, source, recorder, errors, records } = await setup(t)
    fake.setEvents([scheduledEvent({ EventType: 'Preempt', Resources: [VM], NotBefore: 'soon' })])
    source.start(recorder.emit)
    await waitFor(async () => await errors() >= 1, 5000, 'the error')
    assert.equal(recorder.notices.length, 0)
    assert.ok(records.some((r) => String(r.reason).includes('NotBefore')))
  })

  for (const fault of [503, 500, 429, 'garbage', 'hang', 'reset'] satisfies Fault[]) {
    test(`the source survives ${fault} from scheduled events and recovers`, async (t) => {
      const { fake, source, recorder, errors } = await setup(t, { eventsTimeoutMs: 300 })
      fake.fail(fault, { path: AZURE_PATHS.scheduledEvents, times: 3 })
      fake.setEvents([scheduledEvent({ EventType: 'Preempt', Resources: [VM], NotBefore: inOneMinute() })])
      source.start(recorder.emit)
      await waitFor(async () => await errors() >= 3, 5000, 'the failures')
      assert.equal((await recorder.waitForCount(1)).kind, 'Preempt')
    })
  }

  test('stop() ends polling', async (t) => {
    const { fake, source, recorder, pollsMore } = await setup(t)
    source.start(recorder.emit)
    await pollsMore(2)
    await source.stop()
    const count = fake.requests.length
    await sleep(150)
    assert.equal(fake.requests.length, count)
  })
})
