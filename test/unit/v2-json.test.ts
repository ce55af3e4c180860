import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { decodeRequestBody } from '../../src/http/v2-json.js'
import { encodeResponseJson } from '../../src/http/v2-response.js'
import type { InferenceResponse } from '../../src/inference/signature.js'
import type { TensorData, V2Datatype } from '../../src/inference/datatypes.js'
import { toHalfBits } from '../../src/inference/float16.js'
import type { ModelSignature, Tensor } from '../../src/inference/signature.js'

const LIMITS = { maxBatchSize: 8 }

/** A model with one input `x` of the datatype, shape [batch, 2], and one output `y`. */
function signatureOf (datatype: V2Datatype): ModelSignature {
  return { inputs: [{ name: 'x', datatype, shape: [-1, 2] }], outputs: [{ name: 'y', datatype, shape: [-1, 2] }] }
}

function decodeOne (datatype: V2Datatype, data: unknown[]): TensorData {
  const body = { inputs: [{ name: 'x', datatype, shape: [data.length / 2, 2], data }] }
  return decodeRequestBody(body, signatureOf(datatype), LIMITS).inputs[0].data
}

function rejects (datatype: V2Datatype, data: unknown[], pattern: RegExp): void {
  assert.throws(() => decodeOne(datatype, data), (error: Error & { statusCode?: number }) => {
    assert.equal(error.statusCode, 400)
    assert.match(error.message, /input 'x'/)
    assert.match(error.message, pattern)
    return true
  })
}

function tensor (datatype: V2Datatype, data: TensorData, shape = [data.length / 2, 2]): Tensor {
  return { name: 'y', datatype, shape, data }
}

interface ParsedResponse {
  id?: string
  model_name: string
  model_version: string
  outputs: Array<{ name: string, datatype: string, shape: number[], data?: unknown[], parameters?: { binary_data_size: number } }>
}

/** The answer's JSON bytes, parsed back. */
function encodeResponseBody (response: InferenceResponse, binary?: true | readonly string[]): ParsedResponse {
  return JSON.parse(encodeResponseJson(response, binary).toString('utf8')) as ParsedResponse
}

describe('decoding v2 JSON tensors', () => {
  test('FP32 values become a Float32Array', () => {
    const data = decodeOne('FP32', [1.5, -2, 0, 3.4e38])
    assert.ok(data instanceof Float32Array)
    assert.deepEqual([...data], [1.5, -2, 0, Math.fround(3.4e38)])
  })

  test('FP64 values keep full double precision', () => {
    const data = decodeOne('FP64', [1 / 3, -1e300])
    assert.ok(data instanceof Float64Array)
    assert.deepEqual([...data], [1 / 3, -1e300])
  })

  test('FP16 values become half-precision bit patterns', () => {
    const data = decodeOne('FP16', [1, -2, 65504, 0.1])
    assert.ok(data instanceof Uint16Array)
    assert.deepEqual([...data], [0x3c00, 0xc000, 0x7bff, 0x2e66])
  })

  test('floats beyond the datatype\'s range are rejected', () => {
    rejects('FP16', [1, 70000], /data\[1\].*range of FP16/)
    rejects('FP32', [1e39, 0], /data\[0\].*range of FP32/)
  })

  const ranges: Array<[V2Datatype, number, number, string]> = [
    ['INT8', -128, 127, 'Int8Array'],
    ['UINT8', 0, 255, 'Uint8Array'],
    ['INT16', -32768, 32767, 'Int16Array'],
    ['UINT16', 0, 65535, 'Uint16Array'],
    ['INT32', -(2 ** 31), 2 ** 31 - 1, 'Int32Array'],
    ['UINT32', 0, 2 ** 32 - 1, 'Uint32Array']
  ]
  for (const [datatype, min, max, array] of ranges) {
    test(`${datatype} accepts [${min}, ${max}] and rejects values outside it`, () => {
      const data = decodeOne(datatype, [min, max])
      assert.equal(data.constructor.name, array)
      assert.deepEqual([...data], [min, max])
      rejects(datatype, [min - 1, 0], /data\[0\] is -?\d+, expected an integer within the range/)
      rejects(datatype, [0, max + 1], /data\[1\] is \d+, expected an integer within the range/)
      rejects(datatype, [0, 1.5], /data\[1\] is 1\.5/)
    })
  }

  test('INT64 takes numbers and decimal strings, including values beyond 2^53', () => {
    const data = decodeOne('INT64', [-5, '9007199254740993', '9223372036854775807', '-9223372036854775808'])
    assert.ok(data instanceof BigInt64Array)
    assert.deepEqual([...data], [-5n, 9007199254740993n, 2n ** 63n - 1n, -(2n ** 63n)])
  })

  test('INT64 rejects values it cannot hold exactly', () => {
    rejects('INT64', [0, '9223372036854775808'], /data\[1\].*INT64/)
    rejects('INT64', [0, 2 ** 53 + 2], /data\[1\].*INT64/) // a JSON number past 2^53 may already have lost digits
    rejects('INT64', ['1.5', 0], /data\[0\]/)
    rejects('INT64', ['12abc', 0], /data\[0\]/)
    rejects('INT64', [true, 0], /data\[0\]/)
  })

  test('UINT64 spans [0, 2^64 - 1]', () => {
    const data = decodeOne('UINT64', [0, '18446744073709551615'])
    assert.ok(data instanceof BigUint64Array)
    assert.deepEqual([...data], [0n, 2n ** 64n - 1n])
    rejects('UINT64', [-1, 0], /data\[0\]/)
    rejects('UINT64', [0, '18446744073709551616'], /data\[1\]/)
  })

  test('BOOL takes only true and false', () => {
    assert.deepEqual([...decodeOne('BOOL', [true, false])], [1, 0])
    rejects('BOOL', [1, false], /data\[0\] is 1, expected true or false/)
    rejects('BOOL', [true, 'false'], /data\[1\] is "false", expected true or false/)
  })

  test('"NaN", "Infinity" and "-Infinity" are the non-finite values of FP16, FP32 and FP64', () => {
    const floats = decodeOne('FP32', ['NaN', 'Infinity', '-Infinity', 1])
    assert.ok(Number.isNaN(floats[0]))
    assert.deepEqual([...floats].slice(1), [Infinity, -Infinity, 1])
    const doubles = decodeOne('FP64', ['-Infinity', 'NaN'])
    assert.equal(doubles[0], -Infinity)
    assert.ok(Number.isNaN(doubles[1]))
    assert.deepEqual([...decodeOne('FP16', ['Infinity', '-Infinity', 'NaN', 0])], [0x7c00, 0xfc00, 0x7e00, 0])
  })

  test('other spellings of non-finite values are rejected, as are non-finite integers', () => {
    for (const spelling of ['nan', 'inf', '+Infinity', 'Infinity ', 'NaN(1)', '1.5']) {
      rejects('FP32', [1, spelling], /data\[1\] is ".*", expected a number \(FP32\), or "NaN", "Infinity" or "-Infinity"/)
    }
    rejects('FP64', [JSON.parse('1e999'), 0], /data\[0\].*range of FP64/)
    rejects('INT32', ['NaN', 0], /data\[0\] is "NaN", expected an integer/)
    rejects('INT64', ['Infinity', 0], /data\[0\] is "Infinity", expected an integer/)
  })

  test('BYTES takes JSON strings as they are, and nothing else', () => {
    assert.deepEqual(decodeOne('BYTES', ['', 'é', '日本', 'yes']), ['', 'é', '日本', 'yes'])
    rejects('BYTES', ['a', 1], /data\[1\] is 1, expected a string \(BYTES\)/)
    rejects('BYTES', [null, 'a'], /data\[0\] is null, expected a string/)
    rejects('BYTES', ['a', ['b']], /data\[1\] is a nested array/)
    rejects('BYTES', ['\ud83d', 'a'], /data\[0\] contains a lone UTF-16 surrogate/)
    rejects('BYTES', ['a\u0000', 'a'], /data\[0\] contains a NUL character/)
  })

  test('non-numeric and nested values are named by their index', () => {
    rejects('FP32', [1, 'two'], /data\[1\] is "two", expected a number/)
    rejects('FP32', [1, null], /data\[1\] is null/)
    rejects('FP32', [[1], [2]], /data\[0\] is a nested array/)
  })

  test('inputs come out in the model\'s order whatever the request\'s order', () => {
    const signature: ModelSignature = {
      inputs: [{ name: 'a', datatype: 'FP32', shape: [-1, 1] }, { name: 'b', datatype: 'INT64', shape: [-1, 1] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 1] }]
    }
    const decoded = decodeRequestBody({
      inputs: [
        { name: 'b', datatype: 'INT64', shape: [1, 1], data: [7] },
        { name: 'a', datatype: 'FP32', shape: [1, 1], data: [0.5] }
      ]
    }, signature, LIMITS)
    assert.deepEqual(decoded.inputs.map((t) => t.name), ['a', 'b'])
    assert.deepEqual(decoded.inputs.map((t) => t.shape), [[1, 1], [1, 1]])
  })

  test('the request id is kept, and must be a string', () => {
    const body = { id: 'req-42', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] }
    assert.equal(decodeRequestBody(body, signatureOf('FP32'), LIMITS).clientId, 'req-42')
    assert.equal(decodeRequestBody({ ...body, id: undefined }, signatureOf('FP32'), LIMITS).clientId, undefined)
    assert.throws(() => decodeRequestBody({ ...body, id: 42 }, signatureOf('FP32'), LIMITS), /id must be a string/)
  })

  test('requested outputs are checked against the model and deduplicated', () => {
    const signature: ModelSignature = {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }, { name: 'z', datatype: 'FP32', shape: [-1, 2] }]
    }
    const inputs = [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [1, 2] }]
    assert.equal(decodeRequestBody({ inputs }, signature, LIMITS).outputs, undefined, 'absent: all outputs')
    assert.deepEqual(decodeRequestBody({ inputs, outputs: [{ name: 'z' }, { name: 'z' }] }, signature, LIMITS).outputs, ['z'])
    assert.throws(() => decodeRequestBody({ inputs, outputs: [{ name: 'w' }] }, signature, LIMITS), /output 'w' is not an output of this model \(outputs: y, z\)/)
    assert.throws(() => decodeRequestBody({ inputs, outputs: 'y' }, signature, LIMITS), /outputs must be an array/)
    assert.throws(() => decodeRequestBody({ inputs, outputs: [{}] }, signature, LIMITS), /outputs\[0\]\.name must be a string/)
  })
})

describe('encoding v2 JSON responses', () => {
  test('every datatype encodes to JSON values', () => {
    const cases: Array<[V2Datatype, TensorData, unknown[]]> = [
      ['FP32', Float32Array.from([1.5, -0.25]), [1.5, -0.25]],
      ['FP64', Float64Array.from([1 / 3, 1e300]), [1 / 3, 1e300]],
      // 65500 is the shortest text that reads back as the largest half, 65504.
      ['FP16', Uint16Array.from([0x3c00, 0x7bff]), [1, 65500]],
      ['INT8', Int8Array.from([-128, 127]), [-128, 127]],
      ['UINT8', Uint8Array.from([0, 255]), [0, 255]],
      ['INT16', Int16Array.from([-32768, 32767]), [-32768, 32767]],
      ['UINT16', Uint16Array.from([0, 65535]), [0, 65535]],
      ['INT32', Int32Array.from([-(2 ** 31), 2 ** 31 - 1]), [-(2 ** 31), 2 ** 31 - 1]],
      ['UINT32', Uint32Array.from([0, 2 ** 32 - 1]), [0, 2 ** 32 - 1]],
      ['INT64', BigInt64Array.from([-3n, 2n ** 53n - 1n]), [-3, 2 ** 53 - 1]],
      ['UINT64', BigUint64Array.from([0n, 7n]), [0, 7]],
      ['BOOL', Uint8Array.from([1, 0]), [true, false]],
      ['BYTES', ['é', ''], ['é', '']]
    ]
    for (const [datatype, data, expected] of cases) {
      const body = encodeResponseBody({ model: 'm', version: '1', outputs: [tensor(datatype, data)] })
      assert.deepEqual(body.outputs[0], { name: 'y', datatype, shape: [1, 2], data: expected }, datatype)
    }
  })

  test('a BYTES output answered as binary declares its length-prefixed size', () => {
    const body = encodeResponseBody({ model: 'm', version: '1', outputs: [tensor('BYTES', ['é', 'abc'])] }, true)
    assert.deepEqual(body.outputs[0].parameters, { binary_data_size: 4 + 2 + 4 + 3 })
  })

  test('64-bit integers beyond 2^53 are sent as decimal strings, without losing digits', () => {
    const body = encodeResponseBody({
      model: 'm',
      version: '1',
      outputs: [
        tensor('INT64', BigInt64Array.from([2n ** 53n + 1n, -(2n ** 63n), 2n ** 53n, -(2n ** 53n) + 1n])),
        tensor('UINT64', BigUint64Array.from([2n ** 64n - 1n, 1n]))
      ]
    })
    assert.deepEqual(body.outputs[0].data, ['9007199254740993', '-9223372036854775808', '9007199254740992', -(2 ** 53) + 1])
    assert.deepEqual(body.outputs[1].data, ['18446744073709551615', 1])
  })

  test('the response names the model and version and echoes the client id only when given', () => {
    const outputs = [tensor('FP32', Float32Array.from([1, 2]))]
    assert.deepEqual(Object.keys(encodeResponseBody({ model: 'm', version: '3', outputs })), ['model_name', 'model_version', 'outputs'])
    const withId = encodeResponseBody({ model: 'm', version: '3', clientId: 'abc', outputs })
    assert.equal(withId.id, 'abc')
    assert.equal(withId.model_name, 'm')
    assert.equal(withId.model_version, '3')
  })

  test('decode then encode gives back the request\'s values for every datatype', () => {
    const values: Array<[V2Datatype, unknown[]]> = [
      ['FP32', [0.5, -1e10, Math.fround(0.1), 0]],
      ['FP64', [0.1, -1e-300]],
      ['FP16', [0.5, -65504, 2 ** -24, 1024]],
      ['INT8', [-128, 127]],
      ['UINT8', [0, 255]],
      ['INT16', [-32768, 32767]],
      ['UINT16', [0, 65535]],
      ['INT32', [-(2 ** 31), 2 ** 31 - 1]],
      ['UINT32', [0, 2 ** 32 - 1]],
      ['INT64', ['-9223372036854775808', '9223372036854775807', 12, -(2 ** 53) + 1]],
      ['UINT64', ['18446744073709551615', 0]],
      ['BOOL', [true, false, false, true]]
    ]
    for (const [datatype, data] of values) {
      const decoded = decodeOne(datatype, data)
      const body = encodeResponseBody({ model: 'm', version: '1', outputs: [tensor(datatype, decoded)] })
      // Floats come back as the shortest text of their own precision, which reads back to the same value there.
      const atPrecision = datatype === 'FP32' ? (v: unknown) => Math.fround(v as number) : datatype === 'FP16' ? (v: unknown) => toHalfBits(v as number) : (v: unknown) => v
      assert.deepEqual(body.outputs[0].data?.map(atPrecision), data.map(atPrecision), datatype)
    }
  })

  test('non-finite values are answered as "NaN", "Infinity" and "-Infinity", never null', () => {
    const cases: Array<[V2Datatype, TensorData]> = [
      ['FP32', Float32Array.from([NaN, Infinity, -Infinity, 1.5])],
      ['FP64', Float64Array.from([NaN, Infinity, -Infinity, 1.5])],
      ['FP16', Uint16Array.from([0x7e00, 0x7c00, 0xfc00, 0x3e00])]
    ]
    for (const [datatype, data] of cases) {
      const body = encodeResponseBody({ model: 'm', version: '1', outputs: [tensor(datatype, data)] })
      assert.equal(JSON.stringify(body.outputs[0].data), '["NaN","Infinity","-Infinity",1.5]', datatype)
      const again = decodeOne(datatype, JSON.parse(JSON.stringify(body.outputs[0].data)) as unknown[])
      assert.deepEqual([...again].map(String), [...data].map(String), `${datatype} decodes back to the same bits`)
    }
  })

  test('FP16 encodes within half precision: a value rounds to its nearest half', () => {
    const decoded = decodeOne('FP16', [0.1, 1 / 3])
    assert.deepEqual([...decoded], [toHalfBits(0.1), toHalfBits(1 / 3)])
    const body = encodeResponseBody({ model: 'm', version: '1', outputs: [tensor('FP16', decoded)] })
    assert.deepEqual(body.outputs[0].data, [0.1, 0.3333], 'the shortest text that reads back as the same half')
    assert.deepEqual((body.outputs[0].data as number[]).map(toHalfBits), [toHalfBits(0.1), toHalfBits(1 / 3)])
  })
})
