import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fromHalfBits, toHalfBits } from '../../src/inference/float16.js'

const hex = (bits: number): string => `0x${bits.toString(16).padStart(4, '0')}`

test('known values encode to their IEEE 754 half-precision bits', () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [1.5, 0x3e00],
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [65504, 0x7bff],
    [-65504, 0xfbff],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [1023 * 2 ** -24, 0x03ff], // largest subnormal
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00]
  ]
  for (const [value, bits] of cases) assert.equal(hex(toHalfBits(value)), hex(bits), `toHalfBits(${value})`)
})

test('NaN encodes to a quiet NaN and decodes back to NaN', () => {
  const bits = toHalfBits(NaN)
  assert.equal((bits & 0x7c00), 0x7c00)
  assert.notEqual(bits & 0x3ff, 0)
  assert.ok(Number.isNaN(fromHalfBits(bits)))
})

test('values past the largest half overflow to infinity at the halfway point 65520', () => {
  assert.equal(hex(toHalfBits(65519.99)), hex(0x7bff))
  assert.equal(hex(toHalfBits(65520)), hex(0x7c00))
  assert.equal(hex(toHalfBits(-1e9)), hex(0xfc00))
})

test('rounding is to nearest, ties to even', () => {
  const ulp = 2 ** -10 // spacing of halves in [1, 2)
  assert.equal(hex(toHalfBits(1 + ulp / 2)), hex(0x3c00), 'tie rounds down to the even 1.0')
  assert.equal(hex(toHalfBits(1 + 3 * ulp / 2)), hex(0x3c02), 'tie rounds up to the even neighbour')
  assert.equal(hex(toHalfBits(1 + ulp * 0.49)), hex(0x3c00))
  assert.equal(hex(toHalfBits(1 + ulp * 0.51)), hex(0x3c01))
  assert.equal(hex(toHalfBits(2 ** -25)), hex(0x0000), 'half the smallest subnormal ties to zero')
  assert.equal(hex(toHalfBits(3 * 2 ** -25)), hex(0x0002), '1.5 subnormal units ties to 2')
  assert.equal(hex(toHalfBits(2 ** -26)), hex(0x0000), 'underflows to zero')
  assert.equal(hex(toHalfBits(-(2 ** -26))), hex(0x8000), 'underflows to negative zero')
  assert.equal(hex(toHalfBits(2 ** -14 - 2 ** -26)), hex(0x0400), 'rounding the largest subnormal up gives the smallest normal')
  assert.equal(hex(toHalfBits(2 - ulp / 4)), hex(0x4000), 'rounding up carries into the exponent')
})

test('a double just above a halfway point rounds up (rounded once, not via float32)', () => {
  // Through float32 this value first becomes exactly 1 + 2^-11, a tie that would round down to 1.0.
  assert.equal(hex(toHalfBits(1 + 2 ** -11 + 2 ** -30)), hex(0x3c01))
  assert.equal(hex(toHalfBits(-(1 + 2 ** -11 + 2 ** -30))), hex(0xbc01))
})

test('every non-NaN bit pattern survives decode then encode', () => {
  for (let bits = 0; bits <= 0xffff; bits++) {
    const value = fromHalfBits(bits)
    if (Number.isNaN(value)) continue
    if (toHalfBits(value) !== bits) assert.fail(`${hex(bits)} decodes to ${value} but encodes to ${hex(toHalfBits(value))}`)
  }
})

test('decoding gives the exact value of each pattern', () => {
  assert.equal(fromHalfBits(0x3c00), 1)
  assert.equal(fromHalfBits(0xc000), -2)
  assert.equal(fromHalfBits(0x7bff), 65504)
  assert.equal(fromHalfBits(0x0001), 2 ** -24)
  assert.equal(fromHalfBits(0x03ff), 1023 * 2 ** -24)
  assert.equal(fromHalfBits(0x7c00), Infinity)
  assert.equal(fromHalfBits(0xfc00), -Infinity)
  assert.ok(Object.is(fromHalfBits(0x8000), -0))
})
