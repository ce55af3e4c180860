import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildTestApp, fileCleanup } from '../helpers/app.js'
import { RedisServer } from '../helpers/redis-server.js'
import { toHalfBits } from '../../src/inference/float16.js'

// The KServe v2 binary tensor data extension (issue 6, item 3): a JSON header of
// Inference-Header-Content-Length bytes, then the raw little-endian tensor bytes.

type Bytes = Float32Array | Float64Array | Uint16Array | Int8Array | Uint8Array | Int16Array | Int32Array | BigInt64Array

/** One [2, 2] tensor per input of the types model, with each type's extremes. */
const TYPES: ReadonlyArray<{ name: string, datatype: string, data: Bytes, json: unknown[] }> = [
  { name: 'f32', datatype: 'FP32', data: Float32Array.from([1.5, -2.25, 3, 4096]), json: [1.5, -2.25, 3, 4096] },
  { name: 'f64', datatype: 'FP64', data: Float64Array.from([Math.PI, -1e300, 0, 5]), json: [Math.PI, -1e300, 0, 5] },
  { name: 'f16', datatype: 'FP16', data: Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x3800]), json: [1, -2, 65504, 0.5] },
  { name: 'i8', datatype: 'INT8', data: Int8Array.from([-128, 127, 0, -1]), json: [-128, 127, 0, -1] },
  { name: 'u8', datatype: 'UINT8', data: Uint8Array.from([0, 255, 7, 8]), json: [0, 255, 7, 8] },
  { name: 'i16', datatype: 'INT16', data: Int16Array.from([-32768, 32767, 1, -1]), json: [-32768, 32767, 1, -1] },
  { name: 'u16', datatype: 'UINT16', data: Uint16Array.from([0, 65535, 2, 3]), json: [0, 65535, 2, 3] },
  { name: 'i32', datatype: 'INT32', data: Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 5, -5]), json: [-(2 ** 31), 2 ** 31 - 1, 5, -5] },
  { name: 'i64', datatype: 'INT64', data: BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n, 0n, 12345678901234567n]), json: ['-9223372036854775808', '9223372036854775807', 0, '12345678901234567'] },
  { name: 'b', datatype: 'BOOL', data: Uint8Array.from([1, 0, 0, 1]), json: [true, false, false, true] }
]

const bytesOf = (data: Bytes): Buffer => Buffer.from(data.buffer, data.byteOffset, data.byteLength)

/** A binary request: the JSON header, then `chunks`; the header length goes in Inference-Header-Content-Length. */
function binaryRequest (header: unknown, chunks: Buffer[], contentType = 'application/octet-stream') {
  const json = Buffer.from(JSON.stringify(header))
  return {
    payload: Buffer.concat([json, ...chunks]),
    headers: { 'content-type': contentType, 'inference-header-content-length': String(json.length) }
  }
}

interface BinaryAnswer {
  header: { model_name: string, outputs: Array<{ name: string, datatype: string, shape: number[], data?: unknown[], parameters?: { binary_data_size?: number } }> }
  /** Raw bytes of each output sent as binary, by name. */
  binary: Map<string, Buffer>
}

/** Splits a binary answer into its JSON header and each binary output's bytes, checking the sizes add up. */
function parseBinaryAnswer (response: LightMyRequestResponse): BinaryAnswer {
  const length = Number(response.headers['inference-header-content-length'])
  assert.ok(Number.isInteger(length) && length > 0, `Inference-Header-Content-Length: ${String(response.headers['inference-header-content-length'])}`)
  const raw = response.rawPayload
  const header = JSON.parse(raw.subarray(0, length).toString('utf8')) as BinaryAnswer['header']
  const binary = new Map<string, Buffer>()
  let offset = length
  for (const output of header.outputs) {
    const size = output.parameters?.binary_data_size
    if (size === undefined) continue
    assert.equal(output.data, undefined, `output ${output.name} has both data and binary_data_size`)
    binary.set(output.name, raw.subarray(offset, offset + size))
    offset += size
  }
  assert.equal(offset, raw.length, 'the binary sizes add up to the body')
  return { header, binary }
}

let app: FastifyInstance
const fileScope = fileCleanup()

before(async () => {
  ;({ app } = await buildTestApp(fileScope, { models: ['types', 'classifier'] }))
})

after(async () => {
  await fileScope.runAll()
})

const infer = (request: { payload: Buffer, headers: Record<string, string> }, url = '/v2/models/types/infer') =>
  app.inject({ method: 'POST', url, ...request })

describe('round trips', () => {
  test('every datatype goes in and comes back as raw bytes, unchanged', async () => {
    const request = binaryRequest({
      inputs: TYPES.map((t) => ({ name: t.name, datatype: t.datatype, shape: [2, 2], parameters: { binary_data_size: t.data.byteLength } })),
      parameters: { binary_data_output: true }
    }, TYPES.map((t) => bytesOf(t.data)))
    const response = await infer(request)
    assert.equal(response.statusCode, 200, response.body)
    assert.match(String(response.headers['content-type']), /^application\/octet-stream/)
    const { header, binary } = parseBinaryAnswer(response)
    assert.equal(header.model_name, 'types')
    for (const t of TYPES) {
      const output = header.outputs.find((o) => o.name === `${t.name}_out`)
      assert.ok(output !== undefined, `${t.name}_out answered`)
      assert.equal(output.datatype, t.datatype)
      assert.deepEqual(output.shape, [2, 2])
      assert.deepEqual(binary.get(output.name), bytesOf(t.data), `${t.datatype} bytes`)
    }
  })

  test('binary and JSON inputs mix in one request, and JSON outputs decode the same values', async () => {
    const binaryNames = new Set(['f32', 'f16', 'i64', 'b'])
    const request = binaryRequest({
      inputs: TYPES.map((t) => binaryNames.has(t.name)
        ? { name: t.name, datatype: t.datatype, shape: [2, 2], parameters: { binary_data_size: t.data.byteLength } }
        : { name: t.name, datatype: t.datatype, shape: [2, 2], data: t.json })
    }, TYPES.filter((t) => binaryNames.has(t.name)).map((t) => bytesOf(t.data)), 'application/json')
    const response = await infer(request)
    assert.equal(response.statusCode, 200, response.body)
    assert.equal(response.headers['inference-header-content-length'], undefined, 'no binary output was asked for')
    const outputs = response.json<BinaryAnswer['header']>().outputs
    // Floats are answered in the fewest digits that read back as the same value at their precision.
    const atPrecision = (datatype: string, values: unknown[] | undefined): unknown[] | undefined =>
      datatype === 'FP16' ? values?.map((v) => toHalfBits(v as number)) : datatype === 'FP32' ? values?.map((v) => Math.fround(v as number)) : values
    for (const t of TYPES) {
      assert.deepEqual(atPrecision(t.datatype, outputs.find((o) => o.name === `${t.name}_out`)?.data), atPrecision(t.datatype, t.json), `${t.datatype} values`)
    }
  })

  test('binary_data on one output answers that output as bytes and the others as JSON', async () => {
    const f32 = TYPES[0]
    const request = binaryRequest({
      inputs: TYPES.map((t) => ({ name: t.name, datatype: t.datatype, shape: [2, 2], data: t.json })),
      outputs: [{ name: 'f32_out', parameters: { binary_data: true } }, { name: 'i64_out' }]
    }, [], 'application/json')
    const response = await infer(request)
    assert.equal(response.statusCode, 200, response.body)
    const { header, binary } = parseBinaryAnswer(response)
    assert.deepEqual(header.outputs.map((o) => o.name), ['f32_out', 'i64_out'], 'only the outputs asked for')
    assert.deepEqual(binary.get('f32_out'), bytesOf(f32.data))
    assert.equal(header.outputs[0].parameters?.binary_data_size, 16)
    assert.deepEqual(header.outputs[1].data, TYPES.find((t) => t.name === 'i64')?.json)
  })

  test('a plain JSON request may ask for binary outputs', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/infer',
      payload: { model: 'classifier', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }], parameters: { binary_data_output: true } }
    })
    assert.equal(response.statusCode, 200, response.body)
    const { binary } = parseBinaryAnswer(response)
    const probabilities = new Float32Array(Uint8Array.from(binary.get('probabilities') as Buffer).buffer)
    assert.equal(probabilities.length, 3)
    assert.ok(Math.abs(probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-5, 'a softmax sums to 1')
  })

  test('/infer takes binary requests with the model named in the JSON header', async () => {
    const data = Float32Array.from([1, 2, 3, 4])
    const request = binaryRequest({ model: 'classifier', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } }] }, [bytesOf(data)])
    const binary = await infer(request, '/infer')
    const json = await app.inject({ method: 'POST', url: '/infer', payload: { model: 'classifier', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] } })
    assert.equal(binary.statusCode, 200, binary.body)
    assert.deepEqual(binary.json().outputs, json.json().outputs, 'the same answer as the JSON request')
  })
})

describe('malformed binary requests are 400 naming the problem', () => {
  const data = bytesOf(Float32Array.from([1, 2, 3, 4]))
  const header = (size = 16) => ({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: size } }] })
  const V2 = '/v2/models/classifier/infer'

  async function expect400 (request: { payload: Buffer, headers: Record<string, string | string[]> }, error: RegExp): Promise<void> {
    const response = await app.inject({ method: 'POST', url: V2, ...request })
    assert.equal(response.statusCode, 400, response.body)
    assert.match(response.json<{ error: string }>().error, error)
  }

  const valid = binaryRequest(header(), [data])
  const withLength = (value: string | string[]) => ({ payload: valid.payload, headers: { ...valid.headers, 'inference-header-content-length': value } })

  test('a non-numeric Inference-Header-Content-Length', () => expect400(withLength('abc'), /Inference-Header-Content-Length must be one whole number of bytes/))
  test('a negative or fractional Inference-Header-Content-Length', async () => {
    await expect400(withLength('-5'), /Inference-Header-Content-Length must be one whole number/)
    await expect400(withLength('12.5'), /Inference-Header-Content-Length must be one whole number/)
  })
  test('an Inference-Header-Content-Length of 0', () => expect400(withLength('0'), /Inference-Header-Content-Length is 0, but the body has \d+ bytes/))
  test('an Inference-Header-Content-Length larger than the body', () =>
    expect400(withLength(String(valid.payload.length + 1)), new RegExp(`Inference-Header-Content-Length is ${valid.payload.length + 1}, but the body has ${valid.payload.length} bytes`)))
  test('two Inference-Header-Content-Length values', async () => {
    const length = valid.headers['inference-header-content-length']
    await expect400(withLength(`${length}, ${length}`), /Inference-Header-Content-Length must be one whole number/)
    await expect400(withLength([length, length]), /Inference-Header-Content-Length must be one whole number/)
  })
  test('a header section that is not JSON', () => {
    const junk = Buffer.from('{"inputs": [')
    return expect400({ payload: Buffer.concat([junk, data]), headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(junk.length) } },
      /the 12-byte JSON header of the binary request is not valid JSON/)
  })
  test('a header section nested past 64 levels, refused before it is parsed, and one with a __proto__ key', async () => {
    for (const [junk, error] of [
      [Buffer.from('{"inputs":' + '['.repeat(200_000) + ']'.repeat(200_000) + '}'), /the \d+-byte JSON header of the binary request nests arrays and objects more than 64 levels deep/],
      [Buffer.from('{"inputs":[],"__proto__":{"polluted":true}}'), /JSON header of the binary request has a "__proto__" or "constructor.prototype" key/]
    ] as const) {
      await expect400({ payload: Buffer.concat([junk, data]), headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(junk.length) } }, error)
    }
  })
  test('a header length that cuts the JSON short', () => expect400(withLength(String(Number(valid.headers['inference-header-content-length']) - 3)), /JSON header of the binary request is not valid JSON/))
  test('too few bytes for the declared binary_data_size', () =>
    expect400(binaryRequest(header(), [data.subarray(0, 8)]), /input 'input': binary_data_size 16 runs past the end of the body \(8 bytes left\)/))
  test('more bytes than the inputs declare', () =>
    expect400(binaryRequest(header(), [data, Buffer.alloc(4)]), /binary data section has 20 bytes but the inputs' binary_data_size add up to 16/))
  test('binary_data_size that does not match the shape', () =>
    expect400(binaryRequest(header(12), [data.subarray(0, 12)]), /input 'input': binary_data_size is 12, shape \[1,4\] of FP32 needs 16 bytes/))
  test('binary_data_size that is not a number', () =>
    expect400(binaryRequest({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: '16' } }] }, [data]), /input 'input': binary_data_size/))
  test('both data and binary_data_size on one input', () =>
    expect400(binaryRequest({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4], parameters: { binary_data_size: 16 } }] }, [data]), /give either data or binary_data_size, not both/))
  test('BOOL bytes other than 0 and 1', async () => {
    const inputs = TYPES.map((t) => t.name === 'b'
      ? { name: t.name, datatype: t.datatype, shape: [2, 2], parameters: { binary_data_size: 4 } }
      : { name: t.name, datatype: t.datatype, shape: [2, 2], data: t.json })
    const response = await infer(binaryRequest({ inputs }, [Buffer.from([0, 1, 2, 1])]))
    assert.equal(response.statusCode, 400, response.body)
    assert.match(response.json<{ error: string }>().error, /input 'b': BOOL bytes must be 0 or 1/)
  })
})

test('application/octet-stream without Inference-Header-Content-Length is 415', async () => {
  const response = await app.inject({ method: 'POST', url: '/v2/models/classifier/infer', headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(16) })
  assert.equal(response.statusCode, 415, response.body)
  assert.match(response.json<{ error: string }>().error, /application\/octet-stream needs the Inference-Header-Content-Length header/)
})

describe('with the Redis journal', () => {
  let redis: RedisServer
  before(async () => { redis = await RedisServer.start() })
  after(async () => { await redis?.stop() })

  test('an idempotent retry of a binary request gets the stored binary answer back, header length included', async (t) => {
    const testApp = await buildTestApp(t, { models: ['types'], env: { REDIS_URL: redis.url, JOURNAL_NAMESPACE: `binary-${randomUUID().slice(0, 8)}` } })
    const deadline = Date.now() + 5000
    while (testApp.journal.unavailableReason() !== undefined && Date.now() < deadline) await sleep(20)
    const request = binaryRequest({
      inputs: TYPES.map((t) => ({ name: t.name, datatype: t.datatype, shape: [2, 2], parameters: { binary_data_size: t.data.byteLength } })),
      outputs: [{ name: 'i64_out', parameters: { binary_data: true } }, { name: 'b_out' }]
    }, TYPES.map((t) => bytesOf(t.data)))
    const send = () => testApp.app.inject({ method: 'POST', url: '/v2/models/types/infer', payload: request.payload, headers: { ...request.headers, 'idempotency-key': 'binary-retry' } })
    const first = await send()
    assert.equal(first.statusCode, 200, first.body)
    const retry = await send()
    assert.equal(retry.statusCode, 200, retry.body)
    assert.equal(retry.headers['idempotent-replayed'], 'true')
    assert.equal(retry.headers['inference-header-content-length'], first.headers['inference-header-content-length'])
    assert.match(String(retry.headers['content-type']), /^application\/octet-stream/)
    assert.deepEqual(retry.rawPayload, first.rawPayload)
    const { binary, header } = parseBinaryAnswer(retry)
    assert.deepEqual(binary.get('i64_out'), bytesOf(TYPES.find((t) => t.name === 'i64')?.data as Bytes))
    assert.deepEqual(header.outputs.find((o) => o.name === 'b_out')?.data, [true, false, false, true])

    const polled = await testApp.app.inject({ method: 'GET', url: '/infer/binary-retry' })
    assert.equal(polled.statusCode, 200, polled.body)
    assert.deepEqual(polled.rawPayload, first.rawPayload, 'GET /infer/{id} answers the stored bytes too')
    assert.equal(polled.headers['inference-header-content-length'], first.headers['inference-header-content-length'])

    // The same inputs sent as JSON are the same request (the journal keeps tensors as bytes either way).
    const asJson = await testApp.app.inject({
      method: 'POST',
      url: '/v2/models/types/infer',
      headers: { 'idempotency-key': 'binary-retry' },
      payload: { inputs: TYPES.map((t) => ({ name: t.name, datatype: t.datatype, shape: [2, 2], data: t.json })), outputs: [{ name: 'i64_out', parameters: { binary_data: true } }, { name: 'b_out' }] }
    })
    assert.equal(asJson.statusCode, 200, asJson.body)
    assert.equal(asJson.headers['idempotent-replayed'], 'true')
    assert.deepEqual(asJson.rawPayload, first.rawPayload)
  })
})
