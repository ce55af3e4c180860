import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { float16Text, float32Text } from '../../src/http/float-text.js'
import { fromHalfBits, toHalfBits } from '../../src/inference/float16.js'

// The JSON text of float outputs: the shortest decimal that reads back (through a
// double, as any JSON parser reads it) as the same value at the tensor's precision, in
// the layout JavaScript prints numbers in, and the strings the README gives non-finite values.

/** The reference: the first precision whose toPrecision text reads back, printed as JavaScript prints it. */
function shortest (value: number, maxDigits: number, readsBack: (candidate: number) => boolean): string {
  for (let precision = 1; precision <= maxDigits; precision++) {
    const candidate = Number(value.toPrecision(precision))
    if (readsBack(candidate)) return String(candidate)
  }
  throw new Error(`no ${maxDigits}-digit text for ${value}`)
}

function randomFloat32s (count: number, seed: number): Float32Array {
  const bits = new Uint32Array(count)
  let state = seed
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    bits[i] = state
  }
  return new Float32Array(bits.buffer)
}

describe('float32 text', () => {
  test('200 000 random float32 bit patterns: each text reads back exactly and is the shortest', () => {
    for (const value of randomFloat32s(200_000, 7)) {
      if (!Number.isFinite(value)) continue
      const text = float32Text(value)
      assert.equal(Math.fround(JSON.parse(text) as number), value, `${value} → ${text}`)
      if (value !== 0) assert.equal(text, shortest(value, 9, (c) => Math.fround(c) === value), `${value}`)
    }
  })

  test('values across the range: subnormals, the extremes, powers of ten and two, model-like outputs', () => {
    const values = [
      2 ** -149, 2 ** -140, 1.1754943508222875e-38, 3.4028234663852886e38, 1e-45, 1e-38, 1e-10, 1e-7, 1e-6, 1e-5,
      0.1, 0.2, 0.3, 1 / 3, 0.5, 1, 2, 10, 100, 1e7, 16777216, 16777217, 123456789, 1e21, 1e22, 1e30, 65504, Math.PI, Math.E
    ]
    for (const raw of values) {
      for (const value of [Math.fround(raw), -Math.fround(raw)]) {
        const text = float32Text(value)
        assert.equal(Math.fround(JSON.parse(text) as number), value, `${value} → ${text}`)
        assert.equal(text, shortest(value, 9, (c) => Math.fround(c) === value), `${value}`)
      }
    }
    assert.equal(float32Text(Math.fround(0.1)), '0.1')
    assert.equal(float32Text(Math.fround(1e-7)), '1e-7')
    assert.equal(float32Text(Math.fround(3.4028234663852886e38)), '3.4028235e+38')
  })

  test('zero keeps its sign; NaN and the infinities are the strings JSON requests use', () => {
    assert.equal(float32Text(0), '0')
    assert.equal(float32Text(-0), '-0')
    assert.ok(Object.is(JSON.parse(float32Text(-0)), -0))
    assert.equal(float32Text(NaN), '"NaN"')
    assert.equal(float32Text(Infinity), '"Infinity"')
    assert.equal(float32Text(-Infinity), '"-Infinity"')
  })
})

describe('float16 text', () => {
  test('every one of the 65 536 half-precision bit patterns reads back to the same bits, in the fewest digits', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = fromHalfBits(bits)
      const text = float16Text(bits)
      if (Number.isNaN(value)) {
        assert.equal(text, '"NaN"')
        continue
      }
      if (!Number.isFinite(value)) {
        assert.equal(text, value > 0 ? '"Infinity"' : '"-Infinity"')
        continue
      }
      const back = JSON.parse(text) as number
      assert.equal(toHalfBits(back), bits, `${bits.toString(16)} (${value}) → ${text}`)
      if (value !== 0) assert.equal(text, shortest(value, 5, (c) => toHalfBits(c) === bits), `${bits.toString(16)}`)
    }
  })
})
