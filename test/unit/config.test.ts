import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
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
    assert.equal(config.modelLoadFailure, 'exit')
    assert.equal(config.redis, undefined)
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
      MODEL_LOAD_FAILURE: 'skip',
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
    assert.equal(config.modelLoadFailure, 'skip')
    assert.deepEqual(config.redis, { mode: 'single', url: 'rediss://user:secret@redis.internal:6380/2' })
    assert.equal(config.journalPartitions, 1)
    assert.equal(config.journalMinReplicas, 0)
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

  test('REDIS_SENTINELS and REDIS_CLUSTER_NODES name the two highly available modes', () => {
    const sentinel = load({ REDIS_SENTINELS: ' s1.internal:26379, [::1]:26380 ', REDIS_SENTINEL_MASTER: 'journal', REDIS_SENTINEL_PASSWORD: 'watch', REDIS_PASSWORD: 'pw', REDIS_TLS: 'yes', JOURNAL_MIN_REPLICAS: '1', JOURNAL_REPLICA_TIMEOUT_MS: '250' })
    assert.deepEqual(sentinel.redis, {
      mode: 'sentinel',
      sentinels: [{ host: 's1.internal', port: 26379 }, { host: '::1', port: 26380 }],
      master: 'journal',
      auth: { password: 'pw', tls: true },
      sentinelPassword: 'watch'
    })
    assert.equal(sentinel.journalMinReplicas, 1)
    assert.equal(sentinel.journalReplicaTimeoutMs, 250)
    assert.equal(sentinel.journalPartitions, 1, 'one primary: one partition')
    const cluster = load({ REDIS_CLUSTER_NODES: '10.0.0.1:7000,10.0.0.2:7000', REDIS_USERNAME: 'gateway', REDIS_PASSWORD: 'pw' })
    assert.deepEqual(cluster.redis, { mode: 'cluster', nodes: [{ host: '10.0.0.1', port: 7000 }, { host: '10.0.0.2', port: 7000 }], auth: { username: 'gateway', password: 'pw', tls: false } })
    assert.equal(cluster.journalPartitions, 16, 'a cluster: more partitions than shards')
    assert.equal(load({ REDIS_CLUSTER_NODES: '10.0.0.1:7000', JOURNAL_PARTITIONS: '64' }).journalPartitions, 64)
  })

  test('PREEMPTION_SOURCES none turns every cloud source off', () => {
    assert.deepEqual(load({ PREEMPTION_SOURCES: 'none' }).preemptionSources, [])
  })

  test('a repeated execution provider counts once, in its first position', () => {
    assert.deepEqual(load({ EXECUTION_PROVIDERS: 'cpu,cuda,cpu' }).modelDefaults.executionProviders, ['cpu', 'cuda'])
  })

  test('batch settings: defaults, and API_TOKEN and S3_ENDPOINT only when set', () => {
    const config = load({})
    assert.equal(config.apiToken, undefined)
    assert.deepEqual(config.batch, {
      storageUrl: 'file://./data/batches',
      maxFileBytes: 104857600,
      maxLines: 50000,
      shardLines: 100,
      commitIntervalMs: 1000,
      concurrency: 32,
      shardsPerInstance: 2,
      maxAttempts: 3,
      retentionSeconds: 2592000
    })
    const set = load({ API_TOKEN: 't0ken', BATCH_STORAGE_URL: 's3://bucket/prefix', S3_ENDPOINT: 'http://127.0.0.1:9000', BATCH_SHARD_LINES: '10' })
    assert.equal(set.apiToken, 't0ken')
    assert.equal(set.batch.storageUrl, 's3://bucket/prefix')
    assert.equal(set.batch.s3Endpoint, 'http://127.0.0.1:9000')
    assert.equal(set.batch.shardLines, 10)
  })

  test('an optional variable set to the empty string counts as unset', () => {
    const config = load({ REDIS_URL: '', ADMIN_TOKEN: '', INSTANCE_ID: '', MODEL_INSTANCES: '', API_TOKEN: '', S3_ENDPOINT: '' })
    assert.equal(config.apiToken, undefined)
    assert.equal(config.batch.s3Endpoint, undefined)
    assert.equal(config.redis, undefined)
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
    ['REDIS_URL with a port out of range', { REDIS_URL: 'redis://127.0.0.1:99999' }],
    ['REDIS_URL with an unclosed IPv6 bracket', { REDIS_URL: 'redis://[::1' }],
    ['REDIS_URL with a database that is not a number', { REDIS_URL: 'redis://127.0.0.1:6379/abc' }],
    ['REDIS_SENTINELS that names no server', { REDIS_SENTINELS: ' , ', REDIS_SENTINEL_MASTER: 'journal' }],
    ['REDIS_CLUSTER_NODES that names no server', { REDIS_CLUSTER_NODES: ',' }],
    ['unknown LOG_LEVEL', { LOG_LEVEL: 'loud' }],
    ['an API_TOKEN of only whitespace', { API_TOKEN: '   ' }],
    ['an ADMIN_TOKEN of only whitespace', { ADMIN_TOKEN: '\t' }],
    ['an API_TOKEN with a trailing newline', { API_TOKEN: 's3cret\n' }],
    ['unknown MODEL_LOAD_FAILURE', { MODEL_LOAD_FAILURE: 'ignore' }],
    ['MODEL_INSTANCES of zero', { MODEL_INSTANCES: '0' }],
    ['MAX_BODY_BYTES below 1 KiB', { MAX_BODY_BYTES: '10' }],
    ['non-numeric DRAIN_TIMEOUT_MS', { DRAIN_TIMEOUT_MS: 'soon' }],
    ['LEASE_TTL_MS below 500', { LEASE_TTL_MS: '10' }],
    ['metadata URL that is not http', { GCP_METADATA_URL: 'ftp://metadata' }],
    ['INSTANCE_ID with a space', { INSTANCE_ID: 'node a' }],
    ['empty HOST', { HOST: '' }],
    ['REDIS_URL and REDIS_CLUSTER_NODES at once', { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_CLUSTER_NODES: '127.0.0.1:7000' }],
    ['REDIS_SENTINELS and REDIS_CLUSTER_NODES at once', { REDIS_SENTINELS: '127.0.0.1:26379', REDIS_SENTINEL_MASTER: 'journal', REDIS_CLUSTER_NODES: '127.0.0.1:7000' }],
    ['REDIS_SENTINELS without its master name', { REDIS_SENTINELS: '127.0.0.1:26379' }],
    ['REDIS_SENTINELS entry without a port', { REDIS_SENTINELS: '127.0.0.1', REDIS_SENTINEL_MASTER: 'journal' }],
    ['REDIS_CLUSTER_NODES with a port out of range', { REDIS_CLUSTER_NODES: '127.0.0.1:7000,127.0.0.1:99999' }],
    ['REDIS_SENTINEL_MASTER without Sentinels', { REDIS_SENTINEL_MASTER: 'journal' }],
    ['REDIS_SENTINEL_MASTER with a space', { REDIS_SENTINEL_MASTER: 'my journal', REDIS_SENTINELS: '127.0.0.1:26379' }],
    ['JOURNAL_MIN_REPLICAS that is negative', { JOURNAL_MIN_REPLICAS: '-1' }],
    ['JOURNAL_REPLICA_TIMEOUT_MS of zero', { JOURNAL_REPLICA_TIMEOUT_MS: '0' }],
    ['REDIS_TLS that is not a boolean', { REDIS_TLS: 'maybe' }],
    ['JOURNAL_PARTITIONS of zero', { JOURNAL_PARTITIONS: '0' }],
    ['BATCH_STORAGE_URL with an http scheme', { BATCH_STORAGE_URL: 'http://bucket/prefix' }],
    ['S3_ENDPOINT that is not http', { S3_ENDPOINT: 'ftp://minio:9000' }],
    ['MAX_BATCH_FILE_BYTES of zero', { MAX_BATCH_FILE_BYTES: '0' }],
    ['BATCH_SHARD_LINES of zero', { BATCH_SHARD_LINES: '0' }],
    ['non-numeric BATCH_COMMIT_INTERVAL_MS', { BATCH_COMMIT_INTERVAL_MS: 'often' }]
  ]
  test('a refusal says what is allowed: the values of an enumeration, not being empty', () => {
    assert.throws(() => load({ LOG_LEVEL: 'loud' }), { message: 'LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent' })
    assert.throws(() => load({ HOST: '' }), { message: 'HOST: must not be empty' })
  })

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

  test('a PORT another process holds exits 78 naming PORT; so does a HOST that does not resolve, naming HOST', async (t) => {
    const holder = createServer()
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
    t.after(() => new Promise<void>((resolve) => holder.close(() => resolve())))
    const port = (holder.address() as AddressInfo).port
    const repo = await makeRepository(['fixed'])
    t.after(repo.cleanup)
    for (const [env, variable] of [[{ PORT: String(port) }, 'PORT'], [{ HOST: 'no-such-host.invalid' }, 'HOST']] as const) {
      const gateway = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: repo.dir, ...env } })
      const exit = await gateway.waitExit(15_000)
      assert.equal(exit.code, EX_CONFIG, gateway.tail())
      assert.equal(gateway.stderr.length, 1, `one stderr line, got:\n${gateway.tail()}`)
      assert.match(gateway.stderr[0], new RegExp(`^spotgate: ${variable}: `))
      assert.ok(!gateway.tail().includes('    at '), 'no stack trace')
    }
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
    assert.ok(!gateway.tail().includes('    at '), `no stack trace, in the log either:\n${gateway.tail()}`)
  })
})
