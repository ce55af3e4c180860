import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import type { Metrics } from '../../src/metrics.js'
import { buildTestApp, fileCleanup } from '../helpers/app.js'
import { tensor } from '../helpers/requests.js'

// String tensors (ONNX tensor(string), v2 BYTES) through a real model: `strings` echoes
// `text` [batch, 2] and answers `is_yes` [batch, 2]. JSON carries strings; the binary
// extension carries per element a 4-byte little-endian length and the UTF-8 bytes.

const MAX_BODY_BYTES = 65536
const URL = '/v2/models/strings/infer'
const TEXT = ['yes', 'héllo ✓', '', '日本語 🙂']

let app: FastifyInstance
let metrics: Metrics
const fileScope = fileCleanup()

before(async () => {
  ;({ app, metrics } = await buildTestApp(fileScope, { models: ['strings'], env: { MAX_BODY_BYTES: String(MAX_BODY_BYTES) } }))
})

after(async () => {
  await fileScope.runAll()
})

/** Per element: a 4-byte little-endian length, then the bytes. */
function lengthPrefixed (...elements: Array<Buffer | string>): Buffer {
  return Buffer.concat(elements.flatMap((element) => {
    const bytes = Buffer.isBuffer(element) ? element : Buffer.from(element, 'utf8')
    const prefix = Buffer.alloc(4)
    prefix.writeUInt32LE(bytes.length)
    return [prefix, bytes]
  }))
}

/** A length field with any value, hostile ones included. */
function rawLength (value: number): Buffer {
  const prefix = Buffer.alloc(4)
  prefix.writeUInt32LE(value)
  return prefix
}

function binaryRequest (header: unknown, data: Buffer) {
  const json = Buffer.from(JSON.stringify(header))
  return {
    method: 'POST' as const,
    url: URL,
    payload: Buffer.concat([json, data]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(json.length) }
  }
}

/** A binary `text` input of `shape` whose data section is `data`, binary_data_size its length unless given. */
function binaryText (shape: number[], data: Buffer, extra: Record<string, unknown> = {}, size = data.length) {
  return binaryRequest({ inputs: [{ name: 'text', datatype: 'BYTES', shape, parameters: { binary_data_size: size } }], ...extra }, data)
}

interface Output { name: string, datatype: string, shape: number[], data?: unknown[], parameters?: { binary_data_size?: number } }

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

async function refused (request: InjectOptions, message: RegExp, status = 400): Promise<void> {
  const response = await app.inject(request)
  assert.equal(response.statusCode, status, response.body)
  assert.match(response.json().error, message)
}

describe('BYTES in and out', () => {
  test('JSON strings in, JSON strings out, non-ASCII and empty ones included', async () => {
    const response = await app.inject({ method: 'POST', url: URL, payload: { inputs: [tensor('text', 'BYTES', [2, 2], TEXT)] } })
    assert.equal(response.statusCode, 200, response.body)
    assert.deepEqual(response.json().outputs, [
      { name: 'echo', datatype: 'BYTES', shape: [2, 2], data: TEXT },
      { name: 'is_yes', datatype: 'BOOL', shape: [2, 2], data: [true, false, false, false] }
    ])
  })

  test('binary in, binary out: the answer\'s bytes are the request\'s bytes', async () => {
    const data = lengthPrefixed(...TEXT)
    const { outputs, bytes } = splitBinaryAnswer(await app.inject(binaryText([2, 2], data, { parameters: { binary_data_output: true } })))
    assert.deepEqual(outputs.map((o) => [o.name, o.datatype, o.shape, o.parameters?.binary_data_size]), [['echo', 'BYTES', [2, 2], data.length], ['is_yes', 'BOOL', [2, 2], 4]])
    assert.deepEqual(bytes.get('echo'), data)
    assert.deepEqual([...(bytes.get('is_yes') as Buffer)], [1, 0, 0, 0])
  })

  test('binary in, JSON out; and JSON in, binary out', async () => {
    const fromBinary = await app.inject(binaryText([2, 2], lengthPrefixed(...TEXT)))
    assert.equal(fromBinary.statusCode, 200, fromBinary.body)
    assert.deepEqual(fromBinary.json().outputs[0].data, TEXT)
    const { bytes } = splitBinaryAnswer(await app.inject({
      method: 'POST',
      url: URL,
      payload: { inputs: [tensor('text', 'BYTES', [2, 2], TEXT)], outputs: [{ name: 'echo', parameters: { binary_data: true } }] }
    }))
    assert.deepEqual(bytes.get('echo'), lengthPrefixed(...TEXT))
  })

  test('a string with a byte-order mark or JSON escapes keeps every character', async () => {
    const text = ['\ufeffBOM first', 'tab\there', 'quote " and \\ backslash', '\u00e9 and e\u0301']
    const response = await app.inject({ method: 'POST', url: URL, payload: { inputs: [tensor('text', 'BYTES', [2, 2], text)] } })
    assert.equal(response.statusCode, 200, response.body)
    assert.deepEqual(response.json().outputs[0].data, text)
    const binary = await app.inject(binaryText([2, 2], lengthPrefixed(...text)))
    assert.deepEqual(binary.json().outputs[0].data, text)
  })

  test('an empty BYTES tensor is [] in JSON and 0 bytes in binary', async () => {
    const json = await app.inject({ method: 'POST', url: URL, payload: { inputs: [tensor('text', 'BYTES', [0, 2], [])] } })
    assert.equal(json.statusCode, 200, json.body)
    assert.deepEqual(json.json().outputs[0], { name: 'echo', datatype: 'BYTES', shape: [0, 2], data: [] })
    const { outputs } = splitBinaryAnswer(await app.inject(binaryText([0, 2], Buffer.alloc(0), { parameters: { binary_data_output: true } })))
    assert.deepEqual(outputs[0].parameters, { binary_data_size: 0 })
  })

  test('metadata names the string input and output BYTES', async () => {
    const response = await app.inject({ method: 'GET', url: '/v2/models/strings' })
    assert.deepEqual(response.json().inputs, [{ name: 'text', datatype: 'BYTES', shape: [-1, 2] }])
    assert.deepEqual(response.json().outputs[0], { name: 'echo', datatype: 'BYTES', shape: [-1, 2] })
  })
})

describe('batching string tensors', () => {
  /** Runs and rows so far, from spotgate_batch_size. */
  async function batches (): Promise<{ runs: number, rows: number }> {
    const text = await metrics.registry.metrics()
    const value = (suffix: string) => Number(new RegExp(`^spotgate_batch_size_${suffix}\\{model="strings",version="1"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0)
    return { runs: value('count'), rows: value('sum') }
  }

  test('requests that arrive together are merged and each gets its own rows back', async () => {
    const before = await batches()
    const bodies = [
      [['yes', 'a']],
      [['b', 'yes'], ['', 'ü']],
      [['🙂', 'yes']]
    ]
    const responses = await Promise.all(bodies.map((rows) => app.inject({
      method: 'POST',
      url: URL,
      payload: { inputs: [tensor('text', 'BYTES', [rows.length, 2], rows.flat())] }
    })))
    for (const [i, response] of responses.entries()) {
      assert.equal(response.statusCode, 200, response.body)
      const [echo, isYes] = response.json().outputs
      assert.deepEqual(echo.data, bodies[i].flat(), `request ${i} gets its own strings`)
      assert.deepEqual(isYes.data, bodies[i].flat().map((s) => s === 'yes'))
    }
    const after = await batches()
    assert.deepEqual({ runs: after.runs - before.runs, rows: after.rows - before.rows }, { runs: 1, rows: 4 }, 'one run of 4 rows')
  })
})

describe('BYTES that cannot reach the model unchanged are 400 naming the input', () => {
  test('a JSON element that is not a string', () =>
    refused({ method: 'POST', url: URL, payload: { inputs: [tensor('text', 'BYTES', [1, 2], ['a', 7])] } }, /input 'text': data\[1\] is 7, expected a string \(BYTES\)/))

  test('a JSON string with a lone surrogate, which has no UTF-8 form', () =>
    refused({ method: 'POST', url: URL, payload: '{"inputs":[{"name":"text","datatype":"BYTES","shape":[1,2],"data":["a","\\ud800"]}]}', headers: { 'content-type': 'application/json' } },
      /input 'text': data\[1\] contains a lone UTF-16 surrogate/))

  test('a JSON string with a NUL character, which onnxruntime would cut short', () =>
    refused({ method: 'POST', url: URL, payload: { inputs: [tensor('text', 'BYTES', [1, 2], ['a\u0000b', 'c'])] } }, /input 'text': data\[0\] contains a NUL character/))

  test('binary bytes that are not UTF-8', () =>
    refused(binaryText([1, 2], lengthPrefixed('ok', Buffer.from([0xc3, 0x28]))), /input 'text': BYTES data of shape \[1,2\]: element 1 is not valid UTF-8/))

  test('binary NUL bytes', () =>
    refused(binaryText([1, 2], lengthPrefixed('a\0', 'b')), /input 'text': .*element 0 contains a NUL character/))
})

describe('hostile binary BYTES are 400 naming the input, and the server keeps serving', () => {
  test('a length past the end of the body', () =>
    refused(binaryText([1, 2], Buffer.concat([lengthPrefixed('a'), rawLength(1000), Buffer.from('short')])),
      /input 'text': BYTES data of shape \[1,2\]: element 1: length 1000 runs past the end of the data \(5 bytes left\)/))

  test('a negative length', () =>
    refused(binaryText([1, 2], Buffer.concat([rawLength(0xfffffffe), Buffer.from('abcd'), lengthPrefixed('b')])),
      /input 'text': .*element 0: length 4294967294 \(-2 as a signed length\) runs past the end/))

  test('a huge length', () =>
    refused(binaryText([1, 2], Buffer.concat([lengthPrefixed('a'), rawLength(0x7fffffff), Buffer.from('b')])),
      /input 'text': .*element 1: length 2147483647 runs past the end/))

  test('fewer elements than the shape holds', () =>
    refused(binaryText([2, 2], lengthPrefixed('a', 'b', 'c')), /input 'text': BYTES data of shape \[2,2\]: (15 bytes cannot hold 4|element 3)/))

  test('more elements than the shape holds', () =>
    refused(binaryText([1, 2], lengthPrefixed('a', 'b', 'c')), /input 'text': BYTES data of shape \[1,2\]: 5 bytes are left after the 2 BYTES elements/))

  test('a shape of far more elements than the bytes can hold, refused before reading them', () =>
    refused(binaryText([32, 2], lengthPrefixed('a', 'b')), /input 'text': BYTES data of shape \[32,2\]: 10 bytes cannot hold 64 BYTES elements/))

  test('a binary_data_size past the end of the body', () =>
    refused(binaryText([1, 2], lengthPrefixed('a', 'b'), {}, 4096), /input 'text': binary_data_size 4096 runs past the end of the body \(10 bytes left\)/))

  test('after all of them a valid request still succeeds', async () => {
    const response = await app.inject(binaryText([1, 2], lengthPrefixed('yes', 'no')))
    assert.equal(response.statusCode, 200, response.body)
    assert.deepEqual(response.json().outputs[1].data, [true, false])
  })
})

describe('limits and the journal', () => {
  test('strings beyond MAX_BODY_BYTES are 413, in JSON and binary', async () => {
    const long = 'x'.repeat(MAX_BODY_BYTES)
    await refused({ method: 'POST', url: URL, payload: { inputs: [tensor('text', 'BYTES', [1, 2], [long, ''])] } }, /exceeds the limit of 65536 bytes/, 413)
    await refused(binaryText([1, 2], lengthPrefixed(long, '')), /exceeds the limit of 65536 bytes/, 413)
  })

  test('the same strings as JSON and as binary are the same body for an Idempotency-Key; other strings are not', async () => {
    const headers = { 'idempotency-key': 'strings-1' }
    const first = await app.inject({ method: 'POST', url: URL, payload: { inputs: [tensor('text', 'BYTES', [1, 2], ['yes', 'é'])] }, headers })
    assert.equal(first.statusCode, 200, first.body)
    const request = binaryText([1, 2], lengthPrefixed('yes', 'é'))
    const again = await app.inject({ ...request, headers: { ...request.headers, ...headers } })
    assert.equal(again.statusCode, 200, again.body)
    assert.equal(again.headers['idempotent-replayed'], 'true')
    assert.equal(again.body, first.body)
    const other = await app.inject({ method: 'POST', url: URL, payload: { inputs: [tensor('text', 'BYTES', [1, 2], ['ye', 'sé'])] }, headers })
    assert.equal(other.statusCode, 422, other.body)
  })
})
