import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { repoPath } from '../../scripts/lib/paths.js'
import type { FastifyInstance, InjectOptions } from 'fastify'
import type { LightMyRequestResponse } from 'fastify'
import { buildTestApp } from '../helpers/app.js'
import { classifierBody, tabularBody, tabularScore, tensor } from '../helpers/requests.js'
import { toHalfBits } from '../../src/inference/float16.js'

const PACKAGE_VERSION = (JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { version: string }).version

interface V2Output { name: string, datatype: string, shape: number[], data: unknown[] }
interface V2Response { id?: string, model_name: string, model_version: string, outputs: V2Output[] }

const seenRequestIds = new Set<string>()

/** Every response carries a fresh X-Request-Id, whatever the route or status. */
async function call (app: FastifyInstance, options: InjectOptions): Promise<LightMyRequestResponse> {
  const response = await app.inject(options)
  const id = response.headers['x-request-id']
  assert.equal(typeof id, 'string', `${String(options.method)} ${String(options.url)} has no X-Request-Id`)
  assert.ok((id as string).length > 0)
  assert.ok(!seenRequestIds.has(id as string), `X-Request-Id ${String(id)} was reused`)
  seenRequestIds.add(id as string)
  return response
}

const get = (app: FastifyInstance, url: string) => call(app, { method: 'GET', url })
const post = (app: FastifyInstance, url: string, payload: object) => call(app, { method: 'POST', url, payload })

function ok (response: LightMyRequestResponse): V2Response {
  assert.equal(response.statusCode, 200, response.body)
  assert.match(String(response.headers['content-type']), /^application\/json/)
  return response.json<V2Response>()
}

function assertProbabilities (output: V2Output, rows: number): void {
  assert.equal(output.name, 'probabilities')
  assert.equal(output.datatype, 'FP32')
  assert.deepEqual(output.shape, [rows, 3])
  for (let row = 0; row < rows; row++) {
    const values = output.data.slice(row * 3, row * 3 + 3) as number[]
    const sum = values.reduce((a, b) => a + b, 0)
    assert.ok(Math.abs(sum - 1) < 1e-5, `softmax row ${row} sums to ${sum}`)
    for (const v of values) assert.ok(v > 0 && v < 1)
  }
}

test('HTTP API on real onnxruntime sessions', async (t) => {
  const { app, state } = await buildTestApp(t, { models: ['classifier', 'tabular', 'types', 'fixed'] })

  await t.test('POST /infer answers with the default (highest) version and echoes the request id', async () => {
    const body = ok(await post(app, '/infer', classifierBody(2, { model: 'classifier', id: 'client-1' })))
    assert.equal(body.id, 'client-1')
    assert.equal(body.model_name, 'classifier')
    assert.equal(body.model_version, '2')
    assert.equal(body.outputs.length, 1)
    assertProbabilities(body.outputs[0], 2)
  })

  await t.test('POST /infer without an id answers without one', async () => {
    const body = ok(await post(app, '/infer', classifierBody(1, { model: 'classifier' })))
    assert.equal('id' in body, false)
  })

  await t.test('application/json with a charset parameter is accepted', async () => {
    const response = await call(app, {
      method: 'POST',
      url: '/v2/models/classifier/infer',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      payload: JSON.stringify(classifierBody(1))
    })
    assertProbabilities(ok(response).outputs[0], 1)
  })

  await t.test('POST /infer takes the version as a string or an integer', async () => {
    const asString = ok(await post(app, '/infer', classifierBody(1, { model: 'classifier', version: '1' })))
    const asInteger = ok(await post(app, '/infer', classifierBody(1, { model: 'classifier', version: 1 })))
    assert.equal(asString.model_version, '1')
    assert.equal(asInteger.model_version, '1')
    assert.deepEqual(asString.outputs, asInteger.outputs)
  })

  await t.test('versions of a model answer differently and v2 routing reaches the same versions', async () => {
    const v1 = ok(await post(app, '/v2/models/classifier/versions/1/infer', classifierBody(1)))
    const v2 = ok(await post(app, '/v2/models/classifier/versions/2/infer', classifierBody(1)))
    const latest = ok(await post(app, '/v2/models/classifier/infer', classifierBody(1, { id: 'v2-route' })))
    const viaInfer = ok(await post(app, '/infer', classifierBody(1, { model: 'classifier', version: 1 })))
    assert.equal(v1.model_version, '1')
    assert.equal(v2.model_version, '2')
    assert.equal(latest.model_version, '2')
    assert.equal(latest.id, 'v2-route')
    assert.notDeepEqual(v1.outputs[0].data, v2.outputs[0].data)
    assert.deepEqual(latest.outputs, v2.outputs)
    assert.deepEqual(viaInfer.outputs, v1.outputs)
  })

  await t.test('tabular scores are exactly f0 + 2·f1 + 3·f2 + 0.5·category', async () => {
    const features = [[1.5, -2, 0.25], [0, 0, 0], [100, 0.5, -3], [-0.125, 4, 1024]]
    const categories = [3, -4, '7', 0]
    const body = ok(await post(app, '/v2/models/tabular/infer', tabularBody(features, categories)))
    assert.equal(body.model_version, '1')
    assert.deepEqual(body.outputs[0].name, 'score')
    assert.deepEqual(body.outputs[0].shape, [4, 1])
    assert.deepEqual(body.outputs[0].data, features.map((f, i) => tabularScore(f, Number(categories[i]))))
    assert.deepEqual(body.outputs[0].data, [-0.25, -2, 95.5, 3079.875])
  })

  await t.test('concurrent requests, batched together, each get their own rows back', async () => {
    const requests = Array.from({ length: 24 }, (_, i) => {
      const rows = 1 + (i % 3)
      const features = Array.from({ length: rows }, (_, r) => [i, r, 0.5])
      const categories = Array.from({ length: rows }, (_, r) => i * 10 + r)
      return { features, categories }
    })
    const answers = await Promise.all(requests.map(({ features, categories }) =>
      post(app, '/infer', tabularBody(features, categories, { model: 'tabular' }))))
    answers.forEach((response, i) => {
      const { features, categories } = requests[i]
      const body = ok(response)
      assert.deepEqual(body.outputs[0].shape, [features.length, 1])
      assert.deepEqual(body.outputs[0].data, features.map((f, r) => tabularScore(f, categories[r])), `request ${i}`)
    })
  })

  await t.test('a model with fixed dimensions runs unbatched: y = 2·x', async () => {
    const x = [1, -2, 3.5, 0, 0.25, -1024]
    const body = ok(await post(app, '/v2/models/fixed/infer', { inputs: [tensor('x', 'FP32', [2, 3], x)] }))
    assert.deepEqual(body.outputs, [{ name: 'y', datatype: 'FP32', shape: [2, 3], data: x.map((v) => 2 * v) }])
  })

  await t.test('every datatype makes the round trip through onnxruntime unchanged', async () => {
    const values: Record<string, [string, unknown[]]> = {
      f32: ['FP32', [0.5, -1e10, Math.fround(0.1), 3.4028234663852886e38]],
      f64: ['FP64', [0.1, -1 / 3, 1e-300, 1.7976931348623157e308]],
      f16: ['FP16', [0.5, -65504, 2 ** -24, 0.0999755859375]],
      i8: ['INT8', [-128, 127, 0, -1]],
      u8: ['UINT8', [0, 255, 1, 128]],
      i16: ['INT16', [-32768, 32767, 0, 1]],
      u16: ['UINT16', [0, 65535, 1, 32768]],
      i32: ['INT32', [-(2 ** 31), 2 ** 31 - 1, 0, -7]],
      i64: ['INT64', ['-9223372036854775808', '9223372036854775807', '9007199254740993', 42]],
      b: ['BOOL', [true, false, false, true]]
    }
    const inputs = Object.entries(values).map(([name, [datatype, data]]) => tensor(name, datatype, [2, 2], data))
    const body = ok(await post(app, '/v2/models/types/infer', { inputs }))
    assert.equal(body.outputs.length, inputs.length)
    for (const [name, [datatype, data]] of Object.entries(values)) {
      const output = body.outputs.find((o) => o.name === `${name}_out`)
      // Floats come back in the fewest digits that read back as the same value at their precision.
      const atPrecision = (values: unknown[] | undefined): unknown[] | undefined =>
        datatype === 'FP32' ? values?.map((v) => Math.fround(v as number)) : datatype === 'FP16' ? values?.map((v) => toHalfBits(v as number)) : values
      assert.deepEqual({ ...output, data: atPrecision(output?.data) }, { name: `${name}_out`, datatype, shape: [2, 2], data: atPrecision(data) }, name)
    }
  })

  await t.test('only the requested outputs come back', async () => {
    const inputs = [
      tensor('f32', 'FP32', [1, 2], [1, 2]), tensor('f64', 'FP64', [1, 2], [1, 2]), tensor('f16', 'FP16', [1, 2], [1, 2]),
      tensor('i8', 'INT8', [1, 2], [1, 2]), tensor('u8', 'UINT8', [1, 2], [1, 2]), tensor('i16', 'INT16', [1, 2], [1, 2]),
      tensor('u16', 'UINT16', [1, 2], [1, 2]), tensor('i32', 'INT32', [1, 2], [1, 2]), tensor('i64', 'INT64', [1, 2], [1, 2]),
      tensor('b', 'BOOL', [1, 2], [true, false])
    ]
    const body = ok(await post(app, '/v2/models/types/infer', { inputs, outputs: [{ name: 'i64_out' }, { name: 'b_out' }] }))
    assert.deepEqual(body.outputs.map((o) => o.name).sort(), ['b_out', 'i64_out'])
  })

  await t.test('GET /v2/models/{m} describes the model with dynamic dimensions as -1', async () => {
    const response = await get(app, '/v2/models/classifier')
    assert.equal(response.statusCode, 200)
    assert.deepEqual(response.json(), {
      name: 'classifier',
      versions: ['1', '2'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, 3] }]
    })
    const tabular = (await get(app, '/v2/models/tabular')).json()
    assert.deepEqual(tabular.inputs, [
      { name: 'features', datatype: 'FP32', shape: [-1, 3] },
      { name: 'category', datatype: 'INT64', shape: [-1, 1] }
    ])
    assert.deepEqual(tabular.versions, ['1'])
    const fixed = (await get(app, '/v2/models/fixed')).json()
    assert.deepEqual(fixed.inputs, [{ name: 'x', datatype: 'FP32', shape: [2, 3] }])
  })

  await t.test('GET /v2/models/{m}/versions/{v} describes that version', async () => {
    const response = await get(app, '/v2/models/classifier/versions/1')
    assert.equal(response.statusCode, 200)
    assert.equal(response.json().name, 'classifier')
    assert.deepEqual(response.json().versions, ['1', '2'])
    assert.equal(response.json().platform, 'onnxruntime_onnx')
    const unknown = await get(app, '/v2/models/classifier/versions/3')
    assert.equal(unknown.statusCode, 404)
    assert.match(unknown.json().error, /classifier.*version '3'/)
  })

  await t.test('model readiness: 200 for loaded models and versions, 404 otherwise', async () => {
    for (const url of ['/v2/models/classifier/ready', '/v2/models/classifier/versions/1/ready', '/v2/models/tabular/versions/1/ready']) {
      const response = await get(app, url)
      assert.equal(response.statusCode, 200, url)
      assert.equal(response.json().ready, true)
    }
    assert.equal((await get(app, '/v2/models/classifier/ready')).json().version, '2')
    for (const url of ['/v2/models/nope/ready', '/v2/models/classifier/versions/9/ready']) {
      const response = await get(app, url)
      assert.equal(response.statusCode, 404, url)
      assert.equal(typeof response.json().error, 'string')
    }
  })

  await t.test('unknown models are 404 on every model route', async () => {
    for (const response of [
      await get(app, '/v2/models/nope'),
      await post(app, '/v2/models/nope/infer', classifierBody(1)),
      await post(app, '/infer', classifierBody(1, { model: 'nope' }))
    ]) {
      assert.equal(response.statusCode, 404)
      assert.match(response.json().error, /unknown model 'nope'/)
    }
  })

  await t.test('GET /v2 gives the server metadata', async () => {
    const response = await get(app, '/v2')
    assert.equal(response.statusCode, 200)
    assert.deepEqual(response.json(), { name: 'spotgate', version: PACKAGE_VERSION, extensions: ['binary_tensor_data'] })
  })

  await t.test('liveness and readiness answer 200 on both paths when ready', async () => {
    for (const url of ['/health/live', '/v2/health/live', '/health/ready', '/v2/health/ready']) {
      const response = await get(app, url)
      assert.equal(response.statusCode, 200, `${url}: ${response.body}`)
    }
  })

  await t.test('GET /metrics exports the serving metrics and the process defaults', async () => {
    const response = await get(app, '/metrics')
    assert.equal(response.statusCode, 200)
    assert.match(String(response.headers['content-type']), /^text\/plain/)
    const text = response.body
    assert.match(text, /^# TYPE spotgate_requests_total counter$/m)
    assert.match(text, /^spotgate_requests_total\{model="classifier",version="2",outcome="ok"\} [1-9]\d*$/m)
    assert.match(text, /^spotgate_requests_total\{model="tabular",version="1",outcome="ok"\} [1-9]\d*$/m)
    assert.match(text, /^spotgate_requests_total\{model="",version="",outcome="not_found"\} [1-9]\d*$/m)
    for (const model of ['classifier", version="1', 'classifier", version="2', 'tabular", version="1', 'types", version="1', 'fixed", version="1']) {
      const [name, version] = model.split('", version="')
      assert.match(text, new RegExp(`^spotgate_execution_provider_info\\{model="${name}",version="${version}",provider="cpu"\\} 1$`, 'm'))
    }
    assert.match(text, /^spotgate_ready 1$/m)
    assert.match(text, /^spotgate_draining 0$/m)
    assert.match(text, /^spotgate_request_duration_seconds_count\{model="classifier",version="2"\} [1-9]\d*$/m)
    assert.match(text, /^spotgate_inference_duration_seconds_bucket\{le="0\.001",model="tabular",version="1"\} \d+$/m)
    assert.match(text, /^spotgate_queue_duration_seconds_count\{model="tabular",version="1"\} [1-9]\d*$/m)
    assert.match(text, /^spotgate_batch_size_sum\{model="tabular",version="1"\} [1-9]\d*$/m)
    assert.match(text, /^spotgate_inflight_requests\{model="classifier"\} 0$/m)
    assert.match(text, /^process_cpu_user_seconds_total \d/m)
    assert.match(text, /^process_resident_memory_bytes \d/m)
    assert.match(text, /^nodejs_eventloop_lag_seconds \d/m)
    assert.match(text, /^nodejs_heap_size_used_bytes \d/m)
  })

  await t.test('a request for an unknown route is a JSON 404 with a request id', async () => {
    const response = await get(app, '/v3/nothing')
    assert.equal(response.statusCode, 404)
    assert.match(response.json().error, /no route GET \/v3\/nothing/)
  })

  await t.test('while draining, readiness answers 503 with the reason and liveness stays 200', async () => {
    state.enter('draining')
    for (const url of ['/health/ready', '/v2/health/ready']) {
      const response = await get(app, url)
      assert.equal(response.statusCode, 503)
      assert.ok(response.headers['retry-after'] !== undefined, 'Retry-After')
      assert.match(response.body, /draining/)
    }
    for (const url of ['/health/live', '/v2/health/live']) assert.equal((await get(app, url)).statusCode, 200)
    const metrics = (await get(app, '/metrics')).body
    assert.match(metrics, /^spotgate_ready 0$/m)
    assert.match(metrics, /^spotgate_draining 1$/m)
  })
})
