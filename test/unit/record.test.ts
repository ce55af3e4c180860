import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { InferenceRequest, Tensor } from '../../src/inference/signature.js'
import {
  decodeFinalRecord, decodeRequest, encodeFinalRecord, encodePendingRecord, FINGERPRINT_LENGTH, isFinalRecord, pendingOwner, pendingRequest, recordFingerprint
} from '../../src/journal/record.js'

// The journal's packed records: the canonical request bytes a peer replays, the
// idempotency fingerprint, and the stored answer, for every kind of tensor a request can
// carry (numbers, strings, empty tensors, scalars). The Lua scripts read the same
// layout (src/journal/redis/lua/includes/records.lua).

const strings = (shape: number[], values: string[]): Tensor => ({ name: 'text', datatype: 'BYTES', shape, data: values })

function request (inputs: Tensor[], extra: Partial<InferenceRequest> = {}): InferenceRequest {
  return { model: 'm', version: '1', inputs, ...extra }
}

const fingerprintOf = (r: InferenceRequest, requested?: string): string => encodePendingRecord(r, requested, 'owner-a').fingerprint

describe('pending records', () => {
  test('every kind of tensor decodes back to the same request', () => {
    const original = request([
      strings([2, 2], ['yes', '', 'héllo ✓', '日本語 🙂']),
      { name: 'x', datatype: 'FP32', shape: [0, 3], data: new Float32Array(0) },
      { name: 'n', datatype: 'INT64', shape: [], data: BigInt64Array.from([42n]) },
      { name: 'none', datatype: 'BYTES', shape: [0], data: [] },
      { name: 'f', datatype: 'FP64', shape: [2], data: Float64Array.from([NaN, -Infinity]) }
    ], { clientId: 'client-7', outputs: ['y'], binaryOutputs: true })
    const record = encodePendingRecord(original, undefined, 'gateway-1')
    const decoded = decodeRequest(pendingRequest(record.bytes))
    assert.deepEqual(decoded.inputs.map((t) => [t.name, t.datatype, t.shape]), original.inputs.map((t) => [t.name, t.datatype, t.shape]))
    assert.deepEqual(decoded.inputs[0].data, ['yes', '', 'héllo ✓', '日本語 🙂'])
    assert.equal(decoded.inputs[1].data.length, 0)
    assert.deepEqual([...decoded.inputs[2].data], [42n])
    assert.deepEqual(decoded.inputs[3].data, [])
    assert.deepEqual([...decoded.inputs[4].data].map(String), ['NaN', '-Infinity'])
    assert.equal(decoded.clientId, 'client-7')
    assert.deepEqual(decoded.outputs, ['y'])
    assert.equal(decoded.binaryOutputs, true)
  })

  test('the head carries the kind, the fingerprint and the owner the scripts read', () => {
    const record = encodePendingRecord(request([]), '2', 'gateway-1:7')
    assert.equal(record.bytes.toString('latin1', 0, 1), 'P')
    assert.equal(record.fingerprint.length, FINGERPRINT_LENGTH)
    assert.equal(recordFingerprint(record.bytes), record.fingerprint)
    assert.equal(pendingOwner(record.bytes), 'gateway-1:7')
    assert.equal(isFinalRecord(record.bytes), false)
    assert.deepEqual(decodeRequest(pendingRequest(record.bytes)).inputs, [])
  })

  test('the BYTES data is length-prefixed UTF-8, as the binary extension sends it', () => {
    const { bytes } = encodePendingRecord(request([strings([2], ['ab', 'é'])]), undefined, 'o')
    assert.deepEqual([...bytes.subarray(bytes.length - 12)], [2, 0, 0, 0, 0x61, 0x62, 2, 0, 0, 0, 0xc3, 0xa9])
  })
})

describe('fingerprint', () => {
  test('the same strings give the same fingerprint, whatever array holds them and whoever accepts them', () => {
    const r = request([strings([2], ['a', 'b'])])
    assert.equal(encodePendingRecord(r, undefined, 'a').fingerprint, encodePendingRecord(request([strings([2], ['a', 'b'])]), undefined, 'another-instance').fingerprint)
  })

  test('strings that concatenate alike still differ: element boundaries count', () => {
    assert.notEqual(fingerprintOf(request([strings([2], ['ab', ''])])), fingerprintOf(request([strings([2], ['a', 'b'])])))
  })

  test('an empty tensor differs from another empty tensor of another shape', () => {
    const a = fingerprintOf(request([{ name: 'x', datatype: 'FP32', shape: [0, 3], data: new Float32Array(0) }]))
    const b = fingerprintOf(request([{ name: 'x', datatype: 'FP32', shape: [3, 0], data: new Float32Array(0) }]))
    assert.notEqual(a, b)
  })

  test('the version the client named counts; the echoed id and the version it resolved to do not', () => {
    const x: Tensor = { name: 'x', datatype: 'FP32', shape: [1], data: Float32Array.of(1) }
    const base = fingerprintOf(request([x]))
    assert.equal(fingerprintOf(request([x], { clientId: 'another id' })), base)
    assert.equal(fingerprintOf(request([x], { version: '7' })), base, 'a new default version does not change the body')
    assert.notEqual(fingerprintOf(request([x]), '1'), base, 'naming the version is another request')
    assert.notEqual(fingerprintOf(request([x], { outputs: ['y'] })), base)
    assert.notEqual(fingerprintOf(request([{ ...x, data: Float32Array.of(2) }])), base)
  })
})

describe('final records', () => {
  test('an answer comes back byte for byte, with its status, type, binary header length and fingerprint', () => {
    const fingerprint = 'f'.repeat(FINGERPRINT_LENGTH)
    const body = Buffer.concat([Buffer.from('{"outputs":[]}'), Buffer.from([0, 10, 255, 13])])
    const record = encodeFinalRecord(fingerprint, 'done', { statusCode: 200, contentType: 'application/octet-stream', body, headerLength: 14 })
    assert.equal(isFinalRecord(record), true)
    const final = decodeFinalRecord(record)
    assert.equal(final.fingerprint, fingerprint)
    assert.equal(final.state, 'done')
    assert.equal(final.response.statusCode, 200)
    assert.equal(final.response.contentType, 'application/octet-stream')
    assert.equal(final.response.headerLength, 14)
    assert.ok(final.response.body.equals(body))
  })

  test('a failure keeps its status and has no binary header length', () => {
    const record = encodeFinalRecord('x'.repeat(FINGERPRINT_LENGTH), 'failed', { statusCode: 500, contentType: 'application/json; charset=utf-8', body: Buffer.from('{"error":"boom"}') })
    const final = decodeFinalRecord(record)
    assert.equal(final.state, 'failed')
    assert.equal(final.response.statusCode, 500)
    assert.equal(final.response.headerLength, undefined)
    assert.equal(final.response.body.toString(), '{"error":"boom"}')
  })
})
