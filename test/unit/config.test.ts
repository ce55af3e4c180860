import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, test } from 'node:test'
import { loadConfig } from '../../src/config.js'
import { ConfigError, EX_CONFIG } from '../../src/config-error.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository } from '../helpers/model-repo.js'

function load (env: Record<string, string>) {
  return loadConfig(env, false)
}

function rejects (env: Record<string, string>, variable: string): void {
  assert.throws(() => load(env), (error: unknown) => {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`)
    assert.ok(error.message.startsWith(`${variable}`), `message should start with ${variable}: ${error.message}`)
    assert.doesNotMatch(error.message, /\n/, 'the message is one line')
    return true
  })
}

describe('configuration from the environment', () => {
  test('an empty environment gives the documented defaults', () => {
    const config = load({})
    assert.equal(config.host, '0.0.0.0')
    assert.equal(config.port, 8080)
    assert.equal(config.modelRepository, resolve('./models'))
    assert.equal(config.redisUrl, undefined)
    assert.match(config.instanceId, new RegExp(`-${process.pid}$`))
    assert.deepEqual(config.modelDefaults.executionProviders, ['cuda', 'cpu'])
    assert.equal(config.modelDefaults.cudaDeviceId, 0)
    assert.equal(config.modelDefaults.instanceCount, Math.max(1, availableParallelism()))
    assert.equal(config.modelDefaults.warmup, true)
    assert.equal(config.preemptionSources, 'auto')
    assert.deepEqual(config.metadataUrls, {
      aws: 'http://169.254.169.254',
      gcp: 'http://metadata.google.internal',
      azure: 'http://169.254.169.254'
    })
    assert.equal(config.noticePollIntervalMs, 1000)
    assert.equal(config.drainGraceMs, 5000)
    assert.equal(config.drainTimeoutMs, 25000)
    assert.equal(config.drainSafetyMarginMs, 5000)
    assert.equal(config.leaseTtlMs, 5000)
    assert.equal(config.resultTtlSeconds, 3600)
    assert.equal(config.adminToken, undefined)
    assert.equal(config.maxBodyBytes, 16 * 1024 * 1024)
    assert.equal(config.logLevel, 'info')
    assert.ok(Object.isFrozen(config), 'the config is frozen')
  })

  test('every variable of the contract is parsed into the config', () => {
    const config = load({
      HOST: '127.0.0.1',
      PORT: '9091',
      MODEL_REPOSITORY: '/srv/models',
      REDIS_URL: 'rediss://user:secret@redis.internal:6380/2',
      INSTANCE_ID: 'node-a.1',
      EXECUTION_PROVIDERS: ' cpu , cuda ',
      PREEMPTION_SOURCES: 'aws, gcp,azure',
      AWS_METADATA_URL: 'http://127.0.0.1:1001/',
      GCP_METADATA_URL: 'http://127.0.0.1:1002',
      AZURE_METADATA_URL: 'https://127.0.0.1:1003//',
      NOTICE_POLL_INTERVAL_MS: '250',
      DRAIN_GRACE_MS: '100',
      DRAIN_TIMEOUT_MS: '2000',
      DRAIN_SAFETY_MARGIN_MS: '300',
      LEASE_TTL_MS: '1500',
      RESULT_TTL_S: '60',
      ADMIN_TOKEN: 'let-me-in',
      MAX_BODY_BYTES: '4096',
      LOG_LEVEL: 'warn',
      MODEL_INSTANCES: '3',
      CUDA_DEVICE_ID: '1',
      INTRA_OP_THREADS: '2',
      MAX_BATCH_SIZE: '8',
      MAX_QUEUE_DELAY_US: '0',
      MAX_QUEUE_SIZE: '5'
    })
    assert.equal(config.host, '127.0.0.1')
    assert.equal(config.port, 9091)
    assert.equal(config.modelRepository, '/srv/models')
    assert.equal(config.redisUrl, 'rediss://user:secret@redis.internal:6380/2')
    assert.equal(config.instanceId, 'node-a.1')
    assert.deepEqual(config.modelDefaults.executionProviders, ['cpu', 'cuda'])
    assert.deepEqual(config.preemptionSources, ['aws', 'gcp', 'azure'])
    assert.deepEqual(config.metadataUrls, { aws: 'http://127.0.0.1:1001', gcp: 'http://127.0.0.1:1002', azure: 'https://127.0.0.1:1003' })
    assert.equal(config.noticePollIntervalMs, 250)
    assert.equal(config.drainGraceMs, 100)
    assert.equal(config.drainTimeoutMs, 2000)
    assert.equal(config.drainSafetyMarginMs, 300)
    assert.equal(config.leaseTtlMs, 1500)
    assert.equal(config.resultTtlSeconds, 60)
    assert.equal(config.adminToken, 'let-me-in')
    assert.equal(config.maxBodyBytes, 4096)
    assert.equal(config.logLevel, 'warn')
    assert.equal(config.modelDefaults.instanceCount, 3)
    assert.equal(config.modelDefaults.cudaDeviceId, 1)
    assert.equal(config.modelDefaults.intraOpThreads, 2)
    assert.equal(config.modelDefaults.maxBatchSize, 8)
    assert.equal(config.modelDefaults.maxQueueDelayMicros, 0)
    assert.equal(config.modelDefaults.maxQueueSize, 5)
  })

  test('PREEMPTION_SOURCES none turns every cloud source off', () => {
    assert.deepEqual(load({ PREEMPTION_SOURCES: 'none' }).preemptionSources, [])
  })

  test('a repeated execution provider counts once, in its first position', () => {
    assert.deepEqual(load({ EXECUTION_PROVIDERS: 'cpu,cuda,cpu' }).modelDefaults.executionProviders, ['cpu', 'cuda'])
  })

  test('an optional variable set to the empty string counts as unset', () => {
    const config = load({ REDIS_URL: '', ADMIN_TOKEN: '', INSTANCE_ID: '', MODEL_INSTANCES: '' })
    assert.equal(config.redisUrl, undefined)
    assert.equal(config.adminToken, undefined)
    assert.match(config.instanceId, new RegExp(`-${process.pid}$`))
    assert.equal(config.modelDefaults.instanceCount, Math.max(1, availableParallelism()))
  })

  const bad: Array<[string, Record<string, string>]> = [
    ['non-numeric PORT', { PORT: 'http' }],
    ['fractional PORT', { PORT: '80.5' }],
    ['PORT above 65535', { PORT: '70000' }],
    ['negative PORT', { PORT: '-1' }],
    ['unknown execution provider', { EXECUTION_PROVIDERS: 'cuda,tpu' }],
    ['empty execution provider list', { EXECUTION_PROVIDERS: '' }],
    ['unknown preemption source', { PREEMPTION_SOURCES: 'aws,ibm' }],
    ['auto combined with a cloud', { PREEMPTION_SOURCES: 'auto,aws' }],
    ['none combined with a cloud', { PREEMPTION_SOURCES: 'none,gcp' }],
    ['REDIS_URL with an http scheme', { REDIS_URL: 'http://127.0.0.1:6379' }],
    ['REDIS_URL without a scheme', { REDIS_URL: '127.0.0.1:6379' }],
    ['unknown LOG_LEVEL', { LOG_LEVEL: 'loud' }],
    ['MODEL_INSTANCES of zero', { MODEL_INSTANCES: '0' }],
    ['MAX_BODY_BYTES below 1 KiB', { MAX_BODY_BYTES: '10' }],
    ['non-numeric DRAIN_TIMEOUT_MS', { DRAIN_TIMEOUT_MS: 'soon' }],
    ['LEASE_TTL_MS below 500', { LEASE_TTL_MS: '10' }],
    ['metadata URL that is not http', { GCP_METADATA_URL: 'ftp://metadata' }],
    ['INSTANCE_ID with a space', { INSTANCE_ID: 'node a' }],
    ['empty HOST', { HOST: '' }]
  ]
  for (const [what, env] of bad) {
    const variable = Object.keys(env)[0]
    test(`${what} is a ConfigError whose message starts with ${variable}`, () => rejects(env, variable))
  }
})

describe('start-up errors stop the process with exit code 78 and one line naming the cause', () => {
  test('a non-numeric PORT exits 78 naming PORT', async (t) => {
    const gateway = await GatewayProcess.start(t, { env: { PORT: 'eighty', MODEL_REPOSITORY: tmpdir() } })
    const exit = await gateway.waitExit(10_000)
    assert.equal(exit.code, EX_CONFIG, gateway.tail())
    assert.equal(gateway.stderr.length, 1, `one stderr line, got:\n${gateway.tail()}`)
    assert.match(gateway.stderr[0], /\bPORT\b/)
  })

  test('a MODEL_REPOSITORY that does not exist exits 78 naming MODEL_REPOSITORY', async (t) => {
    const missing = join(tmpdir(), `spotgate-missing-${process.pid}-${Date.now()}`)
    const gateway = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: missing } })
    const exit = await gateway.waitExit(10_000)
    assert.equal(exit.code, EX_CONFIG, gateway.tail())
    assert.equal(gateway.stderr.length, 1, `one stderr line, got:\n${gateway.tail()}`)
    assert.match(gateway.stderr[0], /MODEL_REPOSITORY/)
    assert.ok(gateway.stderr[0].includes(missing), gateway.stderr[0])
  })

  test('a MODEL_REPOSITORY that is a file, not a directory, exits 78 naming MODEL_REPOSITORY', async (t) => {
    const repo = await makeRepository(['fixed'])
    t.after(repo.cleanup)
    const gateway = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: repo.modelPath('fixed') } })
    const exit = await gateway.waitExit(10_000)
    assert.equal(exit.code, EX_CONFIG, gateway.tail())
    assert.equal(gateway.stderr.length, 1, `one stderr line, got:\n${gateway.tail()}`)
    assert.match(gateway.stderr[0], /MODEL_REPOSITORY/)
  })

  test('a corrupt model.onnx exits 78 naming the file', async (t) => {
    const repo = await makeRepository(['fixed', 'tabular'])
    t.after(repo.cleanup)
    await writeFile(repo.modelPath('fixed'), 'this is not an ONNX model')
    const gateway = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: repo.dir } })
    const exit = await gateway.waitExit(15_000)
    assert.equal(exit.code, EX_CONFIG, gateway.tail())
    assert.equal(gateway.stderr.length, 1, `one stderr line, got:\n${gateway.tail()}`)
    assert.ok(gateway.stderr[0].includes(repo.modelPath('fixed')), gateway.stderr[0])
    assert.ok(!gateway.stderr[0].includes('    at '), 'no stack trace')
  })
})
