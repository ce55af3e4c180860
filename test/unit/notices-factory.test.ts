import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfig } from '../../src/config.js'
import { ConfigError } from '../../src/config-error.js'
import { createCloudSources } from '../../src/lifecycle/notices/create-cloud-sources.js'
import type { NoticeSource } from '../../src/lifecycle/notices/notice.js'
import { createMetrics } from '../../src/metrics.js'
import { FakeAws, FakeAzure, FakeGcp } from '../helpers/fake-clouds.js'
import { memoryLogger, NoticeRecorder } from '../helpers/notice-recorder.js'

async function fakes (t: TestContext) {
  const [aws, gcp, azure] = await Promise.all([FakeAws.start(), FakeGcp.start(), FakeAzure.start()])
  t.after(() => Promise.all([aws.close(), gcp.close(), azure.close()]))
  const env = { AWS_METADATA_URL: aws.url, GCP_METADATA_URL: gcp.url, AZURE_METADATA_URL: azure.url, NOTICE_POLL_INTERVAL_MS: '50' }
  return { aws, gcp, azure, env }
}

async function dmiDir (t: TestContext, fields: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'spotgate-dmi-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  for (const [name, value] of Object.entries(fields)) await writeFile(join(dir, name), `${value}\n`)
  return dir
}

function started (t: TestContext, sources: NoticeSource[]): NoticeRecorder {
  const recorder = new NoticeRecorder()
  for (const source of sources) source.start(recorder.emit)
  t.after(() => Promise.all(sources.map((s) => s.stop())))
  return recorder
}

describe('cloud notice sources from the configuration', () => {
  test('auto on a machine that is no cloud VM creates no source and sends no metadata traffic', async (t) => {
    const { aws, gcp, azure, env } = await fakes(t)
    const config = loadConfig({ ...env, PREEMPTION_SOURCES: 'auto' }, false)
    const { log, records } = memoryLogger()
    const sources = createCloudSources(config, { log, metrics: createMetrics(), dmiDir: await dmiDir(t, { sys_vendor: 'QEMU', product_name: 'Standard PC' }) })
    assert.deepEqual(sources, [])
    started(t, sources)
    await sleep(150)
    assert.equal(aws.requests.length + gcp.requests.length + azure.requests.length, 0)
    assert.ok(records.some((r) => String(r.msg).includes('no cloud recognised')))
  })

  test('auto on a GCE instance watches only the GCP metadata server', async (t) => {
    const { aws, gcp, azure, env } = await fakes(t)
    const config = loadConfig({ ...env, PREEMPTION_SOURCES: 'auto' }, false)
    const sources = createCloudSources(config, { log: memoryLogger().log, metrics: createMetrics(), dmiDir: await dmiDir(t, { product_name: 'Google Compute Engine' }) })
    assert.deepEqual(sources.map((s) => s.name), ['gcp'])
    const recorder = started(t, sources)
    gcp.setPreempted(true)
    assert.equal((await recorder.waitForCount(1)).kind, 'preempted')
    assert.equal(aws.requests.length + azure.requests.length, 0)
  })

  test('an explicit list creates those sources, pointed at the configured URLs', async (t) => {
    const { aws, gcp, azure, env } = await fakes(t)
    const config = loadConfig({ ...env, PREEMPTION_SOURCES: 'azure, aws' }, false)
    const sources = createCloudSources(config, { log: memoryLogger().log, metrics: createMetrics(), dmiDir: await dmiDir(t, {}) })
    assert.deepEqual(sources.map((s) => s.name), ['azure', 'aws'])
    const recorder = started(t, sources)
    aws.setTargetLifecycleState('Terminated')
    assert.equal((await recorder.waitForCount(1)).kind, 'asg-lifecycle:Terminated')
    assert.ok(azure.requests.length > 0)
    assert.equal(gcp.requests.length, 0)
  })

  test('none creates no source', async (t) => {
    const { env } = await fakes(t)
    const config = loadConfig({ ...env, PREEMPTION_SOURCES: 'none' }, false)
    assert.deepEqual(createCloudSources(config, { log: memoryLogger().log, metrics: createMetrics() }), [])
  })

  test('AWS_REBALANCE_DRAINS turns a rebalance recommendation into a notice', async (t) => {
    assert.equal(loadConfig({}, false).awsRebalanceDrains, false)
    for (const value of ['true', 'TRUE', '1', 'yes', 'on']) assert.equal(loadConfig({ AWS_REBALANCE_DRAINS: value }, false).awsRebalanceDrains, true, value)
    for (const value of ['false', '0', 'no', 'off']) assert.equal(loadConfig({ AWS_REBALANCE_DRAINS: value }, false).awsRebalanceDrains, false, value)
    assert.throws(() => loadConfig({ AWS_REBALANCE_DRAINS: 'maybe' }, false), (error: unknown) =>
      error instanceof ConfigError && error.message.startsWith('AWS_REBALANCE_DRAINS'))

    const { aws, env } = await fakes(t)
    const config = loadConfig({ ...env, PREEMPTION_SOURCES: 'aws', AWS_REBALANCE_DRAINS: 'true' }, false)
    const metrics = createMetrics()
    const recorder = started(t, createCloudSources(config, { log: memoryLogger().log, metrics }))
    aws.setRebalanceRecommendation('2020-10-26T14:14:00Z')
    assert.equal((await recorder.waitForCount(1)).kind, 'rebalance-recommendation')
  })
})
