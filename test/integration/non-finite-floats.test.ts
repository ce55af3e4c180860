import assert from 'node:assert/strict'
import { test } from 'node:test'
import { buildTestApp } from '../helpers/app.js'
import { tensor } from '../helpers/requests.js'

// NaN and ±Infinity through a real model (the types model's Identity per datatype):
// JSON has no literal for them, so they travel as "NaN", "Infinity" and "-Infinity"
// both ways; the binary extension carries their IEEE bits.

const SPECIAL = ['NaN', 'Infinity', '-Infinity', 0.5]

/** The types model's inputs, every one [2, 2]; FP16, FP32 and FP64 carry the non-finite values. */
function typesBody (floats: unknown[]) {
  return {
    inputs: [
      tensor('f32', 'FP32', [2, 2], floats), tensor('f64', 'FP64', [2, 2], floats), tensor('f16', 'FP16', [2, 2], floats),
      ...['i8', 'u8', 'i16', 'u16', 'i32', 'i64'].map((name) => tensor(name, name.replace(/^i/, 'INT').replace(/^u/, 'UINT'), [2, 2], [1, 2, 3, 4])),
      tensor('b', 'BOOL', [2, 2], [true, false, true, false])
    ]
  }
}

test('NaN and ±Infinity round-trip through a model as strings in JSON, for FP16, FP32 and FP64', async (t) => {
  const { app } = await buildTestApp(t, { models: ['types'] })

  await t.test('JSON in, JSON out', async () => {
    const response = await app.inject({ method: 'POST', url: '/v2/models/types/infer', payload: typesBody(SPECIAL) })
    assert.equal(response.statusCode, 200, response.body)
    assert.doesNotMatch(response.body, /null/, 'no value is lost to null')
    const outputs = response.json<{ outputs: Array<{ name: string, data: unknown[] }> }>().outputs
    for (const name of ['f32_out', 'f64_out', 'f16_out']) {
      assert.deepEqual(outputs.find((o) => o.name === name)?.data, SPECIAL, name)
    }
  })

  await t.test('raw IEEE bits in (binary), strings out (JSON)', async () => {
    const f32 = Buffer.from(Float32Array.from([NaN, Infinity, -Infinity, 0.5]).buffer)
    const header = Buffer.from(JSON.stringify({
      inputs: typesBody(SPECIAL).inputs.map((input) => input.name === 'f32' ? { name: 'f32', datatype: 'FP32', shape: [2, 2], parameters: { binary_data_size: 16 } } : input)
    }))
    const response = await app.inject({
      method: 'POST',
      url: '/v2/models/types/infer',
      payload: Buffer.concat([header, f32]),
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) }
    })
    assert.equal(response.statusCode, 200, response.body)
    assert.deepEqual(response.json().outputs.find((o: { name: string }) => o.name === 'f32_out').data, SPECIAL)
  })

  await t.test('strings in (JSON), raw IEEE bits out (binary)', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/v2/models/types/infer',
      payload: { ...typesBody(SPECIAL), outputs: [{ name: 'f64_out', parameters: { binary_data: true } }, { name: 'f16_out', parameters: { binary_data: true } }] }
    })
    assert.equal(response.statusCode, 200, response.body)
    const length = Number(response.headers['inference-header-content-length'])
    const bytes = response.rawPayload.subarray(length)
    const f64 = new Float64Array(Uint8Array.from(bytes.subarray(0, 32)).buffer)
    assert.deepEqual([...f64].map(String), ['NaN', 'Infinity', '-Infinity', '0.5'])
    assert.deepEqual([...new Uint16Array(Uint8Array.from(bytes.subarray(32)).buffer)], [0x7e00, 0x7c00, 0xfc00, 0x3800])
  })

  await t.test('any other string in a float tensor is 400 naming the input and the accepted spellings', async () => {
    const response = await app.inject({ method: 'POST', url: '/v2/models/types/infer', payload: typesBody(['nan', 1, 2, 3]) })
    assert.equal(response.statusCode, 400)
    assert.match(response.json().error, /input 'f32': data\[0\] is "nan", expected a number \(FP32\), or "NaN", "Infinity" or "-Infinity"/)
  })
})
