import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { after, before, describe, test } from 'node:test'
import { toFile } from 'openai'
import { checkedBatch, openaiFor, submitBatch, tabularBatch, waitForBatch } from '../helpers/batches.js'
import { startRedis } from '../helpers/fleet.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository } from '../helpers/model-repo.js'
import { spinBody, spinIterations } from '../helpers/requests.js'
import { S3RVER_ENV, startS3 } from '../helpers/s3-server.js'
import { allow } from '../helpers/timing.js'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

// docs/batches.md through the official openai client: files, batches, validation,
// cancel and expiry, on a directory and on S3 (s3rver), with Redis and without.

const redis = await startRedis(after)
const s3 = await startS3(after)
const repo = await makeRepository(['tabular', 'spin'])
after(repo.cleanup)
const storageDir = await mkdtemp(join(tmpdir(), 'spotgate-batch-store-'))
after(() => rm(storageDir, { recursive: true, force: true }))

function spinLines (count: number, ms: number, prefix = 'spin'): string {
  return Array.from({ length: count }, (_, i) => JSON.stringify({ custom_id: `${prefix}-${i}`, method: 'POST', url: '/v2/models/spin/infer', body: spinBody(spinIterations(ms)) })).join('\n') + '\n'
}

const BACKENDS = {
  'a directory, with Redis': () => ({ REDIS_URL: redis.url, JOURNAL_NAMESPACE: 'api-dir', BATCH_STORAGE_URL: `file://${storageDir}/redis` }),
  'S3 (s3rver), with Redis': () => ({ REDIS_URL: redis.url, JOURNAL_NAMESPACE: 'api-s3', BATCH_STORAGE_URL: `s3://${s3.bucket}/spotgate`, S3_ENDPOINT: s3.endpoint, ...S3RVER_ENV }),
  'a directory, without Redis (in-process)': () => ({ BATCH_STORAGE_URL: `file://${storageDir}/local` })
}

for (const [name, env] of Object.entries(BACKENDS)) {
  describe(`batches on ${name}`, () => {
    let gateway: GatewayProcess
    const files: Array<() => Promise<void>> = []
    before(async () => {
      gateway = await GatewayProcess.start({ after: (fn) => files.push(async () => { await fn() }) }, { env: { MODEL_REPOSITORY: repo.dir, BATCH_SHARD_LINES: '40', ...env() } })
      await gateway.waitReady(30_000)
    })
    after(async () => { for (const cleanup of files) await cleanup() })

    test('a batch completes with every line answered right, once, in input order, with request_counts', async () => {
      const client = openaiFor(gateway)
      const { jsonl, expected } = tabularBatch(250)
      const created = await submitBatch(client, jsonl)
      assert.equal(created.object, 'batch')
      assert.match(created.id, /^batch_/)
      assert.equal(created.status, 'validating')
      assert.equal(created.endpoint, '/v2/models/tabular/infer')
      const batch = await waitForBatch([client], created.id, allow(30_000))
      assert.equal(batch.status, 'completed', JSON.stringify(batch))
      assert.deepEqual(batch.request_counts, { total: 250, completed: 250, failed: 0 })
      for (const field of ['in_progress_at', 'finalizing_at', 'completed_at'] as const) assert.equal(typeof batch[field], 'number', field)
      assert.equal(batch.error_file_id, null)
      const check = await checkedBatch(client, batch, expected)
      assert.deepEqual({ lost: check.lost, duplicated: check.duplicated, wrong: check.wrong, unknown: check.unknown }, { lost: [], duplicated: [], wrong: [], unknown: [] })
      assert.deepEqual(check.outputOrder, expected.map((line) => line.customId))
      const first = JSON.parse(check.output.split('\n')[0]) as { id: string, response: { request_id: string, body: { model_name: string, model_version: string } } }
      assert.match(first.id, /^batch_req_/)
      assert.equal(first.response.body.model_name, 'tabular')
      assert.equal(first.response.body.model_version, '1')
      const output = await client.files.retrieve(batch.output_file_id as string)
      assert.equal(output.purpose, 'batch_output')
      assert.equal(output.bytes, Buffer.byteLength(check.output))
    })

    test('files: upload, retrieve, list, content, delete; a deleted file is 404', async () => {
      const client = openaiFor(gateway)
      const text = tabularBatch(3).jsonl
      const file = await client.files.create({ file: await toFile(Buffer.from(text), 'three.jsonl'), purpose: 'batch' })
      assert.match(file.id, /^file-[A-Za-z0-9_-]{24}$/)
      assert.deepEqual({ object: file.object, bytes: file.bytes, filename: file.filename, purpose: file.purpose }, { object: 'file', bytes: Buffer.byteLength(text), filename: 'three.jsonl', purpose: 'batch' })
      assert.deepEqual(await client.files.retrieve(file.id), file)
      const content = await client.files.content(file.id)
      assert.equal(content.headers.get('content-length'), String(Buffer.byteLength(text)), 'the content is streamed with its length')
      assert.equal(await content.text(), text)
      const head = await gateway.fetch(`/v1/files/${file.id}/content`, { method: 'HEAD' })
      assert.equal(head.status, 200)
      assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(text)), 'HEAD tells the length without sending the content')
      const listed = await client.files.list()
      assert.ok(listed.data.some((f) => f.id === file.id))
      const deleted = await client.files.delete(file.id)
      assert.deepEqual(deleted, { id: file.id, object: 'file', deleted: true })
      await assert.rejects(client.files.retrieve(file.id), (error: { status?: number }) => error.status === 404)
    })
  })
}

describe('one gateway with Redis and a directory', () => {
  let gateway: GatewayProcess
  const cleanups: Array<() => Promise<void>> = []
  before(async () => {
    gateway = await GatewayProcess.start({ after: (fn) => cleanups.push(async () => { await fn() }) }, {
      env: { MODEL_REPOSITORY: repo.dir, REDIS_URL: redis.url, JOURNAL_NAMESPACE: 'api-misc', BATCH_STORAGE_URL: `file://${storageDir}/misc`, BATCH_SHARD_LINES: '5', MAX_BATCH_FILE_BYTES: '200000', MAX_BATCH_LINES: '500', BATCH_COMMIT_INTERVAL_MS: '100' }
    })
    await gateway.waitReady(30_000)
  })
  after(async () => { for (const cleanup of cleanups) await cleanup() })

  test('a bad input file fails the batch at validating, with each error\'s code and 1-based line; nothing runs', async () => {
    const client = openaiFor(gateway)
    const good = (id: string, url = '/v2/models/tabular/infer'): string => JSON.stringify({ custom_id: id, method: 'POST', url, body: { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }, { name: 'category', datatype: 'INT64', shape: [1, 1], data: [0] }] } })
    const lines = [
      good('a'),
      '{not json',
      good('a'),
      good('b', '/v2/models/spin/infer'),
      JSON.stringify({ custom_id: 'c', method: 'GET', url: '/v2/models/tabular/infer', body: {} }),
      JSON.stringify({ custom_id: 'd', method: 'POST', url: '/v2/models/tabular/infer', body: { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 3], data: [1, 2] }] } }),
      good('e'),
      '   \t',
      JSON.stringify({ custom_id: 'f', method: 'POST', url: '/v2/models/tabular/infer', body: { inputs: [] } }).replace('[]', '['.repeat(100) + ']'.repeat(100))
    ]
    const created = await submitBatch(client, lines.join('\n') + '\n')
    const batch = await waitForBatch([client], created.id, allow(15_000))
    assert.equal(batch.status, 'failed')
    assert.equal(typeof batch.failed_at, 'number')
    const errors = (batch.errors?.data ?? []).map((e) => ({ code: e.code, line: e.line }))
    assert.deepEqual(errors, [
      { code: 'invalid_json_line', line: 2 },
      { code: 'duplicate_custom_id', line: 3 },
      { code: 'mismatched_url', line: 4 },
      { code: 'invalid_method', line: 5 },
      { code: 'invalid_body', line: 6 },
      { code: 'invalid_json_line', line: 8 },
      { code: 'invalid_json_line', line: 9 }
    ])
    assert.match(batch.errors?.data?.[4].message ?? '', /features|category/)
    assert.equal(batch.errors?.data?.[5].message, 'empty line')
    assert.match(batch.errors?.data?.[6].message ?? '', /nests arrays and objects more than 65 levels deep/)
    assert.equal(batch.output_file_id, null)
    assert.equal(batch.request_counts?.completed ?? 0, 0)
  })

  test('a file that starts with a UTF-8 byte order mark runs; one of only blank lines fails as empty_file', async () => {
    const client = openaiFor(gateway)
    const { jsonl, expected } = tabularBatch(3)
    const withBom = await waitForBatch([client], (await submitBatch(client, '\ufeff' + jsonl)).id, allow(15_000))
    assert.equal((await checkedBatch(client, withBom, expected)).answered, 3)
    const blank = await waitForBatch([client], (await submitBatch(client, '\n  \n\t\r\n')).id, allow(15_000))
    assert.equal(blank.status, 'failed')
    assert.deepEqual(blank.errors?.data?.map((e) => e.code), ['empty_file'])
  })

  test('an unknown model fails the batch with model_not_found', async () => {
    const client = openaiFor(gateway)
    const { jsonl } = tabularBatch(2, '/v2/models/nope/infer')
    const batch = await waitForBatch([client], (await submitBatch(client, jsonl, '/v2/models/nope/infer')).id, allow(15_000))
    assert.equal(batch.status, 'failed')
    assert.equal(batch.errors?.data?.[0].code, 'model_not_found')
  })

  test('the model version is pinned at validation: an endpoint without a version runs the highest', async () => {
    const client = openaiFor(gateway)
    const { jsonl, expected } = tabularBatch(3)
    const batch = await waitForBatch([client], (await submitBatch(client, jsonl)).id, allow(15_000))
    const check = await checkedBatch(client, batch, expected)
    assert.match(check.output, /"model_version":"1"/)
  })

  test('unknown and malformed ids are 404, never paths', async () => {
    for (const path of ['/v1/files/file-AAAAAAAAAAAAAAAAAAAAAAAA', '/v1/files/..%2F..%2Fetc%2Fpasswd', '/v1/files/..%2Ffiles%2Ffile-x/content', '/v1/batches/batch_AAAAAAAAAAAAAAAAAAAAAAAA', '/v1/batches/%2e%2e']) {
      const response = await gateway.fetch(path)
      assert.equal(response.status, 404, path)
      assert.match(((await response.json()) as { error: string }).error, /^no (file|batch|route)/)
    }
    const cancel = await gateway.fetch('/v1/batches/batch_AAAAAAAAAAAAAAAAAAAAAAAA/cancel', { method: 'POST' })
    assert.equal(cancel.status, 404)
    const deleted = await gateway.fetch('/v1/files/file-..%2F..%2Fx', { method: 'DELETE' })
    assert.equal(deleted.status, 404)
    const create = await gateway.post('/v1/batches', { input_file_id: 'file-AAAAAAAAAAAAAAAAAAAAAAAA', endpoint: '/v2/models/tabular/infer', completion_window: '24h' })
    assert.equal(create.status, 404)
  })

  test('bad uploads are clear 4xx answers: not multipart, wrong purpose, no file, malformed multipart, too large, too many lines', async () => {
    const form = (parts: Array<[string, string | Blob, string?]>): FormData => {
      const data = new FormData()
      for (const [field, value, filename] of parts) {
        if (typeof value === 'string') data.append(field, value)
        else data.append(field, value, filename)
      }
      return data
    }
    const expectError = async (response: Response, status: number, pattern: RegExp): Promise<void> => {
      const text = await response.text()
      assert.equal(response.status, status, text)
      assert.match(text, pattern)
    }
    await expectError(await gateway.post('/v1/files', { purpose: 'batch' }), 400, /multipart/)
    await expectError(await gateway.fetch('/v1/files', { method: 'POST', body: form([['purpose', 'fine-tune'], ['file', new Blob(['{}\n']), 'x.jsonl']]) }), 400, /purpose must be 'batch'/)
    await expectError(await gateway.fetch('/v1/files', { method: 'POST', body: form([['purpose', 'batch']]) }), 400, /no file/)
    await expectError(await gateway.fetch('/v1/files', { method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=xyz' }, body: '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc' }), 400, /malformed multipart|no file/)
    await expectError(await gateway.fetch('/v1/files', { method: 'POST', headers: { 'content-type': 'multipart/form-data' }, body: 'garbage' }), 400, /multipart/)
    await expectError(await gateway.fetch('/v1/files', { method: 'POST', body: form([['purpose', 'batch'], ['file', new Blob([Buffer.alloc(200_001, 0x20)]), 'big.jsonl']]) }), 413, /MAX_BATCH_FILE_BYTES/)
    await expectError(await gateway.fetch('/v1/files', { method: 'POST', body: form([['purpose', 'batch'], ['file', new Blob(['{}\n'.repeat(501)]), 'many.jsonl']]) }), 400, /MAX_BATCH_LINES/)
    await expectError(await gateway.fetch('/v1/files', { method: 'POST', body: form([['purpose', 'batch'], ['file', new Blob(['a']), 'a.jsonl'], ['file', new Blob(['b']), 'b.jsonl']]) }), 400, /too many parts/)
    await expectError(await gateway.post('/v1/batches', { input_file_id: 'x', endpoint: '/v2/models/tabular/infer', completion_window: '24h' }), 400, /input_file_id/)
    await expectError(await gateway.post('/v1/batches', { input_file_id: 'file-AAAAAAAAAAAAAAAAAAAAAAAA', endpoint: '/v1/chat/completions', completion_window: '24h' }), 400, /endpoint/)
    await expectError(await gateway.post('/v1/batches', { input_file_id: 'file-AAAAAAAAAAAAAAAAAAAAAAAA', endpoint: '/v2/models/tabular/infer', completion_window: 'soon' }), 400, /completion_window/)
    await expectError(await gateway.fetch('/v1/batches?limit=0'), 400, /limit/)
  })

  test('batches list newest first, paged with after and limit', async () => {
    const client = openaiFor(gateway)
    const ids: string[] = []
    for (let i = 0; i < 3; i++) ids.push((await submitBatch(client, tabularBatch(1).jsonl)).id)
    const first = await client.batches.list({ limit: 2 })
    assert.deepEqual(first.data.map((b) => b.id), [ids[2], ids[1]])
    assert.equal(first.has_more, true)
    const second = await client.batches.list({ limit: 2, after: ids[1] })
    assert.equal(second.data[0].id, ids[0])
  })

  test('cancel: cancelling, then cancelled with the lines that finished in the output and every other line in the error file as batch_cancelled', async () => {
    const client = openaiFor(gateway)
    const jsonl = spinLines(40, 60, 'cancel')
    const created = await submitBatch(client, jsonl, '/v2/models/spin/infer')
    await waitForBatch([client], created.id, allow(20_000), (b) => (b.request_counts?.completed ?? 0) >= 5)
    await assert.rejects(client.files.delete(created.input_file_id), (error: { status?: number }) => error.status === 409, 'a running batch\'s input cannot be deleted')
    const cancelling = await client.batches.cancel(created.id)
    assert.ok(['cancelling', 'cancelled'].includes(cancelling.status), cancelling.status)
    assert.equal(typeof cancelling.cancelling_at, 'number')
    const batch = await waitForBatch([client], created.id, allow(20_000))
    assert.equal(batch.status, 'cancelled')
    assert.equal(typeof batch.cancelled_at, 'number')
    const expected = Array.from({ length: 40 }, (_, i) => ({ customId: `cancel-${i}` }))
    const check = await checkedBatch(client, batch, expected)
    assert.deepEqual({ lost: check.lost, duplicated: check.duplicated, wrong: check.wrong }, { lost: [], duplicated: [], wrong: [] })
    assert.ok(check.answered >= 5 && check.answered < 40, `${check.answered} lines answered before the cancel took effect`)
    assert.ok(check.errors.length > 0 && check.errors.every((line) => line.error?.code === 'batch_cancelled' && line.response === null))
    assert.deepEqual(batch.request_counts, { total: 40, completed: check.answered, failed: check.errors.length })
    const again = await gateway.fetch(`/v1/batches/${batch.id}/cancel`, { method: 'POST' })
    assert.equal(again.status, 200, 'cancelling a cancelled batch answers the batch')
  })

  test('expiry: past its completion_window a batch expires, keeping what finished; the rest is batch_expired', async () => {
    const client = openaiFor(gateway)
    const created = await submitBatch(client, spinLines(60, 80, 'expire'), '/v2/models/spin/infer', '2s')
    const batch = await waitForBatch([client], created.id, allow(30_000))
    assert.equal(batch.status, 'expired')
    assert.equal(typeof batch.expired_at, 'number')
    const check = await checkedBatch(client, batch, Array.from({ length: 60 }, (_, i) => ({ customId: `expire-${i}` })))
    assert.deepEqual({ lost: check.lost, duplicated: check.duplicated, wrong: check.wrong }, { lost: [], duplicated: [], wrong: [] })
    assert.ok(check.errors.length > 0 && check.errors.every((line) => line.error?.code === 'batch_expired'))
    assert.equal(batch.request_counts?.total, 60)
    assert.equal((batch.request_counts?.completed ?? 0) + (batch.request_counts?.failed ?? 0), 60)
    // Only the assembled files remain: the parts are gone once the batch is final.
    // (A part written after the seal is removed by its writer once its commit is refused.)
    const parts = join(storageDir, 'misc', 'batches', batch.id, 'parts')
    const deadline = Date.now() + allow(5000)
    let left = await readdir(parts).catch(() => [])
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      left = await readdir(parts).catch(() => [])
    }
    assert.deepEqual(left, [])
  })

  test('batch metrics: lines and shards committed, batches by status', async () => {
    const text = await (await gateway.fetch('/metrics')).text()
    assert.match(text, /^spotgate_batch_lines_total\{outcome="committed"\} [1-9]/m)
    assert.match(text, /^spotgate_batch_shards_total\{outcome="committed"\} [1-9]/m)
    assert.match(text, /^spotgate_batches\{status="completed"\} [1-9]/m)
  })
})

describe('API_TOKEN', () => {
  let gateway: GatewayProcess
  const cleanups: Array<() => Promise<void>> = []
  before(async () => {
    gateway = await GatewayProcess.start({ after: (fn) => cleanups.push(async () => { await fn() }) }, { env: { MODEL_REPOSITORY: repo.dir, API_TOKEN: 's3cret-token', BATCH_STORAGE_URL: `file://${storageDir}/token` } })
    await gateway.waitReady(30_000)
  })
  after(async () => { for (const cleanup of cleanups) await cleanup() })

  test('guards /v1 and inference with Bearer (401 otherwise), leaves health, metadata and /metrics open, and never logs the token', async () => {
    for (const [path, init] of [['/v1/files', {}], ['/v1/batches', {}], ['/v1/nothing-here', {}], ['/infer/some-id', {}], ['/v2/models/tabular/infer', { method: 'POST', body: '{}' }], ['/infer', { method: 'POST', body: '{}' }]] as const) {
      const response = await gateway.fetch(path, { ...init, headers: { 'content-type': 'application/json', authorization: 'Bearer wrong' } })
      assert.equal(response.status, 401, path)
      assert.equal(response.headers.get('www-authenticate'), 'Bearer')
      const bare = await gateway.fetch(path, { ...init, headers: { 'content-type': 'application/json' } })
      assert.equal(bare.status, 401, path)
    }
    for (const path of ['/health/ready', '/health/live', '/v2/models/tabular', '/v2', '/metrics']) assert.equal((await gateway.fetch(path)).status, 200, path)
    // The router decodes percent-escapes and takes absolute-form targets: neither gets past the token.
    for (const [path, init] of [['/%761/files', {}], ['/%761/batches', {}], ['/%69nfer', { method: 'POST', body: '{}' }], ['/v2/models/tabular/inf%65r', { method: 'POST', body: '{}' }]] as const) {
      assert.equal((await gateway.fetch(path, { ...init, headers: { 'content-type': 'application/json' } })).status, 401, path)
    }
    for (const target of ['http://example.com/v1/files', `${gateway.url}/v1/batches`]) {
      assert.equal(await statusOfRequestTarget(gateway.url, target), 401, target)
    }
    await assert.rejects(openaiFor(gateway, 'wrong').files.list(), (error: { status?: number }) => error.status === 401)
    const client = openaiFor(gateway, 's3cret-token')
    const { jsonl, expected } = tabularBatch(5)
    const batch = await waitForBatch([client], (await submitBatch(client, jsonl)).id, allow(15_000))
    assert.equal((await checkedBatch(client, batch, expected)).answered, 5)
    assert.ok(!gateway.lines.some((line) => line.text.includes('s3cret-token')), 'the token is never logged')
  })
})

/** The status of a GET whose request line carries `target` as it is (an absolute-form URL, say). */
function statusOfRequestTarget (baseUrl: string, target: string): Promise<number> {
  const { hostname, port } = new URL(baseUrl)
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: hostname, port, path: target, method: 'GET' }, (response) => {
      response.resume()
      resolve(response.statusCode ?? 0)
    })
    request.on('error', reject)
    request.end()
  })
}

test('an upload refused because Redis is down (503) leaves no object behind in storage', async (t) => {
  const own = await startRedis(t.after.bind(t))
  const dir = join(storageDir, 'orphan-check')
  const gateway = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: repo.dir, REDIS_URL: own.url, JOURNAL_NAMESPACE: 'api-orphan', BATCH_STORAGE_URL: `file://${dir}`, REDIS_COMMAND_TIMEOUT_MS: '300' } })
  await gateway.waitReady(30_000)
  own.pause()
  t.after(() => own.resume())
  const form = new FormData()
  form.append('purpose', 'batch')
  form.append('file', new Blob([tabularBatch(2).jsonl]), 'two.jsonl')
  const response = await gateway.fetch('/v1/files', { method: 'POST', body: form })
  assert.equal(response.status, 503, await response.text())
  const stored = await readdir(join(dir, 'files')).catch(() => [])
  assert.deepEqual(stored.filter((name) => !name.startsWith('.tmp-')), [], 'no uploaded object outlives its 503')
})
