import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildTestApp, fileCleanup } from '../helpers/app.js'
import { tensor } from '../helpers/requests.js'

// Empty tensors (a 0 in the shape), scalars (shape []) and models without inputs, on
// real onnxruntime sessions: ReduceSum with an empty list of axes, Split into a
// zero-size part, Range on scalars, and a model made of constants.

let app: FastifyInstance
const fileScope = fileCleanup()

before(async () => {
  // Range and Split fail their all-zero warm-up, which is only a warning (warmup.test.ts).
  ;({ app } = await buildTestApp(fileScope, { models: ['classifier', 'reduce_sum', 'split', 'range', 'constant'] }))
})

after(async () => {
  await fileScope.runAll()
})

interface Output { name: string, datatype: string, shape: number[], data?: unknown[], parameters?: { binary_data_size?: number } }

async function infer (model: string, body: unknown): Promise<Output[]> {
  const response = await app.inject({ method: 'POST', url: `/v2/models/${model}/infer`, payload: body as object })
  assert.equal(response.statusCode, 200, response.body)
  return response.json<{ outputs: Output[] }>().outputs
}

function output (outputs: Output[], name: string): Output {
  const found = outputs.find((o) => o.name === name)
  assert.ok(found !== undefined, `output ${name} in ${JSON.stringify(outputs).slice(0, 300)}`)
  return found
}

/** A binary request: the JSON header, then `chunks`. */
function binaryRequest (header: unknown, chunks: Buffer[]) {
  const json = Buffer.from(JSON.stringify(header))
  return {
    payload: Buffer.concat([json, ...chunks]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(json.length) }
  }
}

/** The JSON header of a binary answer and the bytes of each binary output. */
function splitBinaryAnswer (response: LightMyRequestResponse): { outputs: Output[], bytes: Map<string, Buffer> } {
  assert.equal(response.statusCode, 200, response.body)
  const length = Number(response.headers['inference-header-content-length'])
  const raw = response.rawPayload
  const { outputs } = JSON.parse(raw.subarray(0, length).toString('utf8')) as { outputs: Output[] }
  const bytes = new Map<string, Buffer>()
  let offset = length
  for (const o of outputs) {
    const size = o.parameters?.binary_data_size
    if (size === undefined) continue
    bytes.set(o.name, raw.subarray(offset, offset + size))
    offset += size
  }
  assert.equal(offset, raw.length, 'binary sizes add up to the body')
  return { outputs, bytes }
}

const f32Bytes = (values: number[]): Buffer => Buffer.from(Float32Array.from(values).buffer)
const i64Bytes = (values: number[]): Buffer => Buffer.from(BigInt64Array.from(values.map(BigInt)).buffer)

describe('empty tensors in', () => {
  test('an empty list of axes (INT64 [0], data []) makes ReduceSum sum over every axis', async () => {
    const outputs = await infer('reduce_sum', {
      inputs: [tensor('data', 'FP32', [1, 2, 3], [1, 2, 3, 4, 5, 6]), tensor('axes', 'INT64', [0], [])]
    })
    assert.deepEqual(output(outputs, 'sum'), { name: 'sum', datatype: 'FP32', shape: [1, 1, 1], data: [21] })
  })

  test('an empty data tensor [0, 3, 4] reduces to an empty [0, 1, 4]', async () => {
    const outputs = await infer('reduce_sum', {
      inputs: [tensor('data', 'FP32', [0, 3, 4], []), tensor('axes', 'INT64', [1], [1])]
    })
    assert.deepEqual(output(outputs, 'sum'), { name: 'sum', datatype: 'FP32', shape: [0, 1, 4], data: [] })
  })

  test('binary: an empty tensor is 0 bytes in the request and 0 bytes in the answer', async () => {
    const request = binaryRequest({
      inputs: [
        { name: 'data', datatype: 'FP32', shape: [0, 3, 4], parameters: { binary_data_size: 0 } },
        { name: 'axes', datatype: 'INT64', shape: [1], parameters: { binary_data_size: 8 } }
      ],
      parameters: { binary_data_output: true }
    }, [i64Bytes([1])])
    const { outputs, bytes } = splitBinaryAnswer(await app.inject({ method: 'POST', url: '/v2/models/reduce_sum/infer', ...request }))
    assert.deepEqual(output(outputs, 'sum').shape, [0, 1, 4])
    assert.equal(output(outputs, 'sum').parameters?.binary_data_size, 0)
    assert.equal(bytes.get('sum')?.length, 0)
  })

  test('binary: empty axes as 0 bytes sum over every axis', async () => {
    const request = binaryRequest({
      inputs: [
        { name: 'data', datatype: 'FP32', shape: [1, 2, 2], parameters: { binary_data_size: 16 } },
        { name: 'axes', datatype: 'INT64', shape: [0], parameters: { binary_data_size: 0 } }
      ],
      outputs: [{ name: 'sum', parameters: { binary_data: true } }]
    }, [f32Bytes([1, 2, 3, 4])])
    const { bytes } = splitBinaryAnswer(await app.inject({ method: 'POST', url: '/v2/models/reduce_sum/infer', ...request }))
    assert.deepEqual(bytes.get('sum'), f32Bytes([10]))
  })

  test('an empty tensor whose data is not empty is 400 naming the input', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/v2/models/reduce_sum/infer',
      payload: { inputs: [tensor('data', 'FP32', [0, 3, 4], [1]), tensor('axes', 'INT64', [0], [])] }
    })
    assert.equal(response.statusCode, 400)
    assert.match(response.json().error, /input 'data': data has 1 values, shape \[0,3,4\] needs 0/)
  })

  test('a batchable model takes zero rows, alone and in the same batch as other requests', async () => {
    const rows = (n: number) => ({ inputs: [tensor('input', 'FP32', [n, 4], Array.from({ length: n * 4 }, (_, i) => i / 10))] })
    const alone = await infer('classifier', rows(0))
    assert.deepEqual(output(alone, 'probabilities'), { name: 'probabilities', datatype: 'FP32', shape: [0, 3], data: [] })
    const expectedTwo = await infer('classifier', rows(2))
    const together = await Promise.all([rows(0), rows(2), rows(0), rows(1)].map((body) => infer('classifier', body)))
    assert.deepEqual(together.map((o) => output(o, 'probabilities').shape), [[0, 3], [2, 3], [0, 3], [1, 3]])
    assert.deepEqual(output(together[1], 'probabilities').data, output(expectedTwo, 'probabilities').data)
    assert.deepEqual(output(together[3], 'probabilities').data, output(expectedTwo, 'probabilities').data?.slice(0, 3))
  })
})

describe('empty tensors out', () => {
  test('Split into a zero-size part and the rest', async () => {
    const outputs = await infer('split', { inputs: [tensor('x', 'FP32', [3], [1, 2, 3]), tensor('sizes', 'INT64', [2], [0, 3])] })
    assert.deepEqual(output(outputs, 'head'), { name: 'head', datatype: 'FP32', shape: [0], data: [] })
    assert.deepEqual(output(outputs, 'tail'), { name: 'tail', datatype: 'FP32', shape: [3], data: [1, 2, 3] })
  })

  test('Split of an empty tensor into two empty parts, answered as binary', async () => {
    const request = binaryRequest({
      inputs: [
        { name: 'x', datatype: 'FP32', shape: [0], parameters: { binary_data_size: 0 } },
        { name: 'sizes', datatype: 'INT64', shape: [2], data: [0, 0] }
      ],
      parameters: { binary_data_output: true }
    }, [])
    const { outputs, bytes } = splitBinaryAnswer(await app.inject({ method: 'POST', url: '/v2/models/split/infer', ...request }))
    assert.deepEqual(outputs.map((o) => [o.name, o.shape, o.parameters?.binary_data_size]), [['head', [0], 0], ['tail', [0], 0]])
    assert.equal(bytes.get('head')?.length, 0)
  })
})

describe('scalars', () => {
  test('Range on three scalar inputs (shape [], one value each)', async () => {
    const outputs = await infer('range', {
      inputs: [tensor('start', 'INT64', [], [2]), tensor('limit', 'INT64', [], [11]), tensor('delta', 'INT64', [], [3])]
    })
    assert.deepEqual(output(outputs, 'values'), { name: 'values', datatype: 'INT64', shape: [3], data: [2, 5, 8] })
  })

  test('an empty range comes back as shape [0]', async () => {
    const outputs = await infer('range', {
      inputs: [tensor('start', 'INT64', [], [5]), tensor('limit', 'INT64', [], [5]), tensor('delta', 'INT64', [], [1])]
    })
    assert.deepEqual(output(outputs, 'values'), { name: 'values', datatype: 'INT64', shape: [0], data: [] })
  })

  test('binary scalars are one element each', async () => {
    const request = binaryRequest({
      inputs: ['start', 'limit', 'delta'].map((name) => ({ name, datatype: 'INT64', shape: [], parameters: { binary_data_size: 8 } })),
      parameters: { binary_data_output: true }
    }, [i64Bytes([0]), i64Bytes([-6]), i64Bytes([-2])])
    const { bytes } = splitBinaryAnswer(await app.inject({ method: 'POST', url: '/v2/models/range/infer', ...request }))
    assert.deepEqual(bytes.get('values'), i64Bytes([0, -2, -4]))
  })

  test('a scalar with no value, or with two, is 400 naming the input', async () => {
    for (const data of [[], [1, 2]]) {
      const response = await app.inject({
        method: 'POST',
        url: '/v2/models/range/infer',
        payload: { inputs: [tensor('start', 'INT64', [], data), tensor('limit', 'INT64', [], [1]), tensor('delta', 'INT64', [], [1])] }
      })
      assert.equal(response.statusCode, 400)
      assert.match(response.json().error, new RegExp(`input 'start': data has ${data.length} values, shape \\[\\] needs 1`))
    }
  })

  test('a scalar sent with shape [1] is 400: the model declares rank 0', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/v2/models/range/infer',
      payload: { inputs: [tensor('start', 'INT64', [1], [1]), tensor('limit', 'INT64', [], [1]), tensor('delta', 'INT64', [], [1])] }
    })
    assert.equal(response.statusCode, 400)
    assert.match(response.json().error, /input 'start': shape \[1\] has rank 1, the model expects rank 0/)
  })
})

describe('a model without inputs', () => {
  const expected = [
    { name: 'table', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] },
    { name: 'answer', datatype: 'INT64', shape: [], data: [42] },
    { name: 'empty', datatype: 'FP32', shape: [0, 3], data: [] }
  ]

  test('runs on "inputs": []', async () => {
    assert.deepEqual(await infer('constant', { inputs: [] }), expected)
  })

  test('runs without "inputs" at all, on /infer too', async () => {
    assert.deepEqual(await infer('constant', {}), expected)
    const response = await app.inject({ method: 'POST', url: '/infer', payload: { model: 'constant', id: 'c-1' } })
    assert.equal(response.statusCode, 200, response.body)
    assert.equal(response.json().id, 'c-1')
    assert.deepEqual(response.json().outputs, expected)
  })

  test('answers its outputs as binary, the scalar as 8 bytes and the empty one as 0', async () => {
    const response = await app.inject({ method: 'POST', url: '/v2/models/constant/infer', payload: { parameters: { binary_data_output: true } } })
    const { outputs, bytes } = splitBinaryAnswer(response)
    assert.deepEqual(outputs.map((o) => [o.name, o.shape, o.parameters?.binary_data_size]), [['table', [2, 3], 24], ['answer', [], 8], ['empty', [0, 3], 0]])
    assert.deepEqual(bytes.get('answer'), i64Bytes([42]))
  })

  test('an input it does not have is 400 saying it has none', async () => {
    const response = await app.inject({ method: 'POST', url: '/v2/models/constant/infer', payload: { inputs: [tensor('x', 'FP32', [1], [1])] } })
    assert.equal(response.statusCode, 400)
    assert.match(response.json().error, /input 'x' is not an input of this model \(it has no inputs\)/)
  })

  test('metadata lists no inputs and the scalar output with shape []', async () => {
    const response = await app.inject({ method: 'GET', url: '/v2/models/constant' })
    assert.equal(response.statusCode, 200)
    assert.deepEqual(response.json().inputs, [])
    assert.deepEqual(response.json().outputs[1], { name: 'answer', datatype: 'INT64', shape: [] })
  })
})

describe('journaled like any request', () => {
  test('a retry with the same Idempotency-Key gets the stored answer with its empty tensors', async () => {
    const body = { inputs: [tensor('x', 'FP32', [0], []), tensor('sizes', 'INT64', [2], [0, 0])] }
    const headers = { 'idempotency-key': 'empty-split-1' }
    const first = await app.inject({ method: 'POST', url: '/v2/models/split/infer', payload: body, headers })
    const second = await app.inject({ method: 'POST', url: '/v2/models/split/infer', payload: body, headers })
    assert.equal(first.statusCode, 200, first.body)
    assert.equal(second.headers['idempotent-replayed'], 'true')
    assert.equal(second.body, first.body)
    const other = await app.inject({ method: 'POST', url: '/v2/models/split/infer', payload: { inputs: [tensor('x', 'FP32', [1], [7]), tensor('sizes', 'INT64', [2], [0, 1])] }, headers })
    assert.equal(other.statusCode, 422, 'another body under the same key')
  })
})
