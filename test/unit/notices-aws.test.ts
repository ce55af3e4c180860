import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { AwsNoticeSource, type AwsNoticeSourceOptions } from '../../src/lifecycle/notices/aws.js'
import { createMetrics } from '../../src/metrics.js'
import { AWS_PATHS, FakeAws, isoSeconds, type Fault, type RecordedRequest } from '../helpers/fake-clouds.js'
import { counterValue, memoryLogger, NoticeRecorder, waitFor } from '../helpers/notice-recorder.js'
import { allow } from '../helpers/timing.js'

const POLL_MS = 50

async function setup (t: TestContext, options: Partial<AwsNoticeSourceOptions> = {}) {
  const fake = await FakeAws.start()
  const metrics = createMetrics()
  const { log, records } = memoryLogger()
  const source = new AwsNoticeSource({
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
  const errors = () => counterValue(metrics.noticeSourceErrors, { source: 'aws' })
  const polls = () => fake.requestsTo(AWS_PATHS.spotInstanceAction).filter((r) => r.status === 404 || r.status === 200).length
  return { fake, metrics, records, source, recorder, errors, polls }
}

describe('AWS notice source (IMDSv2)', () => {
  test('polls the three notice paths with a session token and emits nothing while there is no notice', async (t) => {
    const { fake, source, recorder } = await setup(t)
    source.start(recorder.emit)
    const answered = (path: string) => fake.requestsTo(path).filter((r) => r.status !== undefined).length
    await waitFor(() => Object.values(AWS_PATHS).slice(1).every((path) => answered(path) >= 3), 5000, 'three polls of each path')

    const puts = fake.requestsTo(AWS_PATHS.token)
    assert.equal(puts.length, 1, 'one token serves every poll')
    assert.equal(puts[0]?.method, 'PUT')
    assert.equal(puts[0]?.headers['x-aws-ec2-metadata-token-ttl-seconds'], '21600')
    const gets = fake.requests.filter((r) => r.method === 'GET' && r.status !== undefined)
    assert.ok(gets.length >= 9)
    for (const get of gets) {
      assert.equal(typeof get.headers['x-aws-ec2-metadata-token'], 'string', `${get.path} carries the token`)
      assert.equal(get.status, 404)
    }
    assert.equal(recorder.notices.length, 0)
  })

  test('a spot instance-action in the real text/plain form is a notice with its time as deadline', async (t) => {
    const { fake, source, recorder } = await setup(t)
    const time = isoSeconds(Date.now() + 120_000)
    fake.setSpotInstanceAction({ action: 'terminate', time }, 'imds')
    source.start(recorder.emit)
    const notice = await recorder.waitForCount(1)
    assert.equal(notice.source, 'aws')
    assert.equal(notice.kind, 'spot-instance-action:terminate')
    assert.equal(notice.deadline, Date.parse(time))
    assert.match(notice.description, /terminate/)
  })

  test('the mock\'s application/json form with a time that moves later on each answer is one notice', async (t) => {
    const { fake, source, recorder, polls } = await setup(t)
    fake.setSpotInstanceAction({ action: 'stop' }, 'mock')
    source.start(recorder.emit)
    const notice = await recorder.waitForCount(1)
    assert.equal(notice.kind, 'spot-instance-action:stop')
    assert.ok(notice.deadline !== undefined && Math.abs(notice.deadline - (Date.now() + 120_000)) < 3000)
    const seen = polls()
    await waitFor(() => polls() >= seen + 3, 5000, 'more polls')
    assert.equal(recorder.notices.length, 1, 'a repeat with a later time is not emitted again')

    fake.setSpotInstanceAction({ action: 'stop', time: isoSeconds(Date.now() + 30_000) }, 'mock')
    const closer = await recorder.waitForCount(2)
    assert.ok(closer.deadline !== undefined && closer.deadline < notice.deadline, 'an earlier deadline is emitted')
  })

  test('an expired token gets 401, a new token and one retry', async (t) => {
    const { fake, source, recorder, polls, errors } = await setup(t)
    source.start(recorder.emit)
    await waitFor(() => polls() >= 2, 5000, 'polls')
    fake.expireTokens()
    fake.setSpotInstanceAction({ action: 'terminate', time: isoSeconds(Date.now() + 60_000) })
    await recorder.waitForCount(1)

    assert.ok(fake.requests.some((r) => r.status === 401), 'the expired token was refused')
    assert.equal(fake.tokensIssued, 2, 'one new token for the three concurrent refusals')
    const retryOf = (refused: RecordedRequest) => fake.requestsTo(refused.path).find((r) => r.receivedAt >= refused.receivedAt && r !== refused && r.status !== undefined)
    const refusals = fake.requests.filter((r) => r.status === 401)
    await waitFor(() => refusals.every((r) => retryOf(r) !== undefined), 1000, 'the retries')
    for (const refused of refusals) {
      const retry = retryOf(refused)
      assert.ok(retry !== undefined && retry.status !== 401, `${refused.path} is retried with the new token`)
      assert.notEqual(retry.headers['x-aws-ec2-metadata-token'], refused.headers['x-aws-ec2-metadata-token'])
    }
    assert.equal(await errors(), 0, 'a refresh after 401 is not an error')
  })

  test('the token is refreshed before it expires', async (t) => {
    const { fake, source, recorder } = await setup(t, { tokenTtlSeconds: 2 })
    source.start(recorder.emit)
    await waitFor(() => fake.tokensIssued >= 2, 5000, 'a refresh')
    const [first, second] = fake.requestsTo(AWS_PATHS.token)
    assert.equal(first?.headers['x-aws-ec2-metadata-token-ttl-seconds'], '2')
    assert.ok(first !== undefined && second !== undefined)
    assert.ok(second.receivedAt < first.receivedAt + 2000, 'asked for before the first one expired')
    assert.ok(second.receivedAt > first.receivedAt + 1000, 'not on every poll')
  })

  test('only the ASG target lifecycle state Terminated is a notice, with no deadline', async (t) => {
    const { fake, source, recorder, polls } = await setup(t)
    fake.setTargetLifecycleState('InService')
    source.start(recorder.emit)
    await waitFor(() => polls() >= 3, 5000, 'polls')
    assert.equal(recorder.notices.length, 0)

    fake.setTargetLifecycleState('Terminated')
    const notice = await recorder.waitForCount(1)
    assert.equal(notice.kind, 'asg-lifecycle:Terminated')
    assert.equal(notice.deadline, undefined)
  })

  test('a rebalance recommendation is logged and counted once, and drains only when configured to', async (t) => {
    const plain = await setup(t)
    plain.fake.setRebalanceRecommendation('2020-10-26T14:14:00Z', 'mock')
    plain.source.start(plain.recorder.emit)
    await waitFor(() => plain.records.some((r) => String(r.msg).includes('rebalance recommendation')), 5000, 'the log line')
    const seen = plain.polls()
    await waitFor(() => plain.polls() >= seen + 3, 5000, 'more polls')
    assert.equal(await counterValue(plain.metrics.rebalanceRecommendations), 1)
    assert.equal(plain.recorder.notices.length, 0, 'an early warning, not a drain')

    const draining = await setup(t, { rebalanceDrains: true })
    draining.fake.setRebalanceRecommendation('2020-10-26T14:14:00Z')
    draining.source.start(draining.recorder.emit)
    const notice = await draining.recorder.waitForCount(1)
    assert.equal(notice.kind, 'rebalance-recommendation')
    assert.equal(notice.deadline, undefined)
  })

  for (const [name, body] of [
    ['garbage', '<html>captive portal</html>'],
    ['a notice without a time', '{"action":"terminate"}'],
    ['an unparsable time', '{"action":"terminate","time":"in two minutes"}'],
    ['a non-ISO time', '{"action":"terminate","time":"1"}']
  ] as const) {
    test(`${name} on spot/instance-action is an error, not a drain`, async (t) => {
      const { fake, source, recorder, errors, records } = await setup(t)
      fake.setSpotInstanceActionBody(body)
      source.start(recorder.emit)
      await waitFor(() => fake.requestsTo(AWS_PATHS.spotInstanceAction).length >= 3, 5000, 'retries')
      assert.equal(recorder.notices.length, 0)
      assert.ok(await errors() >= 1, 'counted')
      assert.ok(records.some((r) => r.level === 40 && String(r.msg).includes('spot instance-action')), 'logged as a warning')
    })
  }

  for (const fault of [503, 500, 429, 'garbage', 'hang', 'reset'] satisfies Fault[]) {
    test(`the source survives ${fault} from the metadata service and recovers`, async (t) => {
      const { fake, source, recorder, errors, polls } = await setup(t, { requestTimeoutMs: 300 })
      fake.fail(fault)
      source.start(recorder.emit)
      await waitFor(async () => await errors() >= 2, 5000, 'failures to be counted')
      assert.equal(recorder.notices.length, 0)

      fake.clearFaults()
      const before = polls()
      await waitFor(() => polls() > before + 1, 5000, 'polls after recovery')
      fake.setSpotInstanceAction({ action: 'terminate', time: isoSeconds(Date.now() + 60_000) })
      const notice = await recorder.waitForCount(1)
      assert.equal(notice.kind, 'spot-instance-action:terminate')
    })
  }

  test('retries back off instead of hammering a failing service', async (t) => {
    const { fake, source, recorder } = await setup(t, { retry: { initialMs: 100, maxMs: 400 } })
    fake.fail(503)
    source.start(recorder.emit)
    await sleep(700)
    // Delays of 75-100, 150-200, 300-400 ms: at most 4 rounds in 700 ms, against 14 at the poll interval.
    const rounds = fake.requestsTo(AWS_PATHS.token).length
    assert.ok(rounds <= 4, `${rounds} rounds in 700 ms`)
  })

  test('stop() returns promptly during a hung request and ends all traffic', async (t) => {
    const { fake, source, recorder } = await setup(t, { requestTimeoutMs: 10_000 })
    fake.fail('hang', { path: AWS_PATHS.spotInstanceAction })
    source.start(recorder.emit)
    await waitFor(() => fake.requestsTo(AWS_PATHS.spotInstanceAction).length >= 1, 5000, 'the hung request')
    const started = Date.now()
    await source.stop()
    assert.ok(Date.now() - started < allow(200), `stop took ${Date.now() - started} ms`)
    await waitFor(() => fake.requestsTo(AWS_PATHS.spotInstanceAction)[0]?.aborted === true, 1000, 'the request to be aborted')
    const count = fake.requests.length
    await sleep(200)
    assert.equal(fake.requests.length, count, 'no request after stop()')
  })

  test('a listener that throws does not end the source', async (t) => {
    const { fake, source, polls } = await setup(t)
    fake.setSpotInstanceAction({ action: 'terminate', time: isoSeconds(Date.now() + 60_000) })
    let calls = 0
    source.start(() => { calls++; throw new Error('listener bug') })
    await waitFor(() => calls === 1, 5000, 'the notice')
    const seen = polls()
    await waitFor(() => polls() >= seen + 2, 5000, 'polling to go on')
  })
})
