import { fromHalfBits, toHalfBits } from '../inference/float16.js'

// Floating-point numbers as the JSON text of v2 answers: the shortest decimal that reads
// back to the same value at the tensor's own precision. A float32 output written with
// double precision (JSON.stringify) spends 17 digits on noise below float32's 24 bits
// ("0.10000000149011612" for 0.1f); written here it is "0.1", and Math.fround of the
// parsed text gives back exactly that float32. JSON has no NaN or infinities: they are
// the strings "NaN", "Infinity" and "-Infinity", as requests may send them.
//
// The hot path writes ASCII bytes straight into a buffer with integer arithmetic:
// answers carry thousands of these numbers, and this is where their time goes.

/** Powers of ten up to 10^22, every one exact in a double, so a scaling by one rounds once. */
const POW10 = Array.from({ length: 23 }, (_, k) => 10 ** k)
/** Most bytes one number takes: "-1.2345678e-38". */
export const MAX_FLOAT_TEXT_BYTES = 16

const NAN = Buffer.from('"NaN"')
const INFINITY = Buffer.from('"Infinity"')
const MINUS_INFINITY = Buffer.from('"-Infinity"')

function writeAscii (out: Buffer, at: number, text: Buffer | string): number {
  if (typeof text === 'string') return at + out.write(text, at, 'latin1')
  text.copy(out, at)
  return at + text.length
}

function writeNonFinite (out: Buffer, at: number, value: number): number {
  return writeAscii(out, at, Number.isNaN(value) ? NAN : value > 0 ? INFINITY : MINUS_INFINITY)
}

/** 10^k for k from -330 to 330, each the double nearest to it. */
const DECADE_OFFSET = 330
const DECADES = Array.from({ length: 2 * DECADE_OFFSET + 1 }, (_, i) => Number(`1e${i - DECADE_OFFSET}`))
const bitsView = new Float64Array(1)
const highWord = new Uint32Array(bitsView.buffer, 4, 1)

/**
 * The power of ten of the first significant digit of `magnitude` (a positive finite
 * double), from its binary exponent: log10(2^e) is below log10(magnitude) by less than
 * log10(2), so the estimate is exact or one low, and one comparison settles it.
 */
function decimalExponent (magnitude: number): number {
  bitsView[0] = magnitude
  const binary = ((highWord[0] >>> 20) & 0x7ff) - 1023
  // Subnormal doubles never reach here: float32 and float16 values are normal doubles.
  let exponent = Math.floor(binary * 0.30102999566398120)
  if (magnitude >= DECADES[exponent + 1 + DECADE_OFFSET]) exponent++
  return exponent
}

/**
 * `magnitude` rounded to `precision` significant digits, as an integer, or -1 when the
 * scaling would need a power of ten that is not exact in a double (|values| past about
 * 1e±13 at nine digits), for which the slow path is exact.
 */
function scaledTo (magnitude: number, exponent: number, precision: number): number {
  const shift = precision - 1 - exponent
  if (shift >= POW10.length || -shift >= POW10.length) return -1
  return shift >= 0 ? Math.round(magnitude * POW10[shift]) : Math.round(magnitude / POW10[-shift])
}

function unscaled (scaled: number, exponent: number, precision: number): number {
  const shift = precision - 1 - exponent
  return shift >= 0 ? scaled / POW10[shift] : scaled * POW10[-shift]
}

/**
 * Writes the decimal `scaled` (an integer of at most `precision` + 1 digits) whose first
 * digit is worth 10^`exponent`, laid out as JavaScript prints numbers.
 */
function writeDecimal (out: Buffer, at: number, negative: boolean, scaled: number, exponent: number, precision: number): number {
  let digits = scaled | 0
  // 9.996 at three digits rounds up to 10.0: one more digit before the point.
  if (digits >= POW10[precision]) exponent++
  while (digits >= 10 && digits % 10 === 0) digits = (digits / 10) | 0
  let count = 1
  while (count < 10 && digits >= POW10[count]) count++
  if (negative) out[at++] = 45 // '-'
  const point = exponent + 1
  if (point > 21 || point < -5) {
    // d[.ddd]e±x
    writeDigits(out, at, digits, count)
    if (count > 1) {
      out.copyWithin(at + 2, at + 1, at + count)
      out[at + 1] = 46 // '.'
      at += count + 1
    } else {
      at += 1
    }
    out[at++] = 101 // 'e'
    out[at++] = exponent < 0 ? 45 : 43
    return writeAscii(out, at, String(Math.abs(exponent)))
  }
  if (point <= 0) {
    out[at++] = 48
    out[at++] = 46
    for (let i = 0; i < -point; i++) out[at++] = 48
    writeDigits(out, at, digits, count)
    return at + count
  }
  if (point >= count) {
    writeDigits(out, at, digits, count)
    at += count
    for (let i = count; i < point; i++) out[at++] = 48
    return at
  }
  writeDigits(out, at, digits, count)
  out.copyWithin(at + point + 1, at + point, at + count)
  out[at + point] = 46
  return at + count + 1
}

/** "00".."99" as byte pairs, to write two digits per division. */
const PAIRS = Buffer.from(Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0')).join(''), 'latin1')

function writeDigits (out: Buffer, at: number, digits: number, count: number): void {
  let i = at + count
  while (i - at >= 2) {
    const next = (digits / 100) | 0
    const pair = (digits - next * 100) * 2
    out[--i] = PAIRS[pair + 1]
    out[--i] = PAIRS[pair]
    digits = next
  }
  if (i > at) out[--i] = 48 + digits
}

/**
 * Writes a float32 value (a double that holds a float32 exactly) as JSON text at `at`
 * and returns the end. A decimal that reads back at p digits also does at p + 1 (the
 * nearest (p + 1)-digit decimal is at least as close), so the precision is bisected.
 */
export function writeFloat32 (out: Buffer, at: number, value: number): number {
  if (!Number.isFinite(value)) return writeNonFinite(out, at, value)
  if (value === 0) return writeAscii(out, at, Object.is(value, -0) ? '-0' : '0')
  const magnitude = value < 0 ? -value : value
  const exponent = decimalExponent(magnitude)
  let low = 1
  let high = 9
  let best = 0
  let bestScaled = 0
  while (low <= high) {
    const precision = (low + high) >> 1
    const scaled = scaledTo(magnitude, exponent, precision)
    if (scaled < 0) return writeAscii(out, at, shortestByPrecision(value, 9, (candidate) => Math.fround(candidate) === value))
    if (Math.fround(unscaled(scaled, exponent, precision)) === magnitude) {
      best = precision
      bestScaled = scaled
      high = precision - 1
    } else {
      low = precision + 1
    }
  }
  return writeDecimal(out, at, value < 0, bestScaled, exponent, best)
}

/** Writes a float16 value, given as its IEEE half-precision bits, as JSON text. */
export function writeFloat16 (out: Buffer, at: number, bits: number): number {
  const value = fromHalfBits(bits)
  if (!Number.isFinite(value)) return writeNonFinite(out, at, value)
  if (value === 0) return writeAscii(out, at, (bits & 0x8000) !== 0 ? '-0' : '0')
  const magnitude = value < 0 ? -value : value
  const magnitudeBits = bits & 0x7fff
  const exponent = decimalExponent(magnitude)
  for (let precision = 1; precision <= 5; precision++) {
    const scaled = scaledTo(magnitude, exponent, precision)
    if (toHalfBits(unscaled(scaled, exponent, precision)) === magnitudeBits) return writeDecimal(out, at, value < 0, scaled, exponent, precision)
  }
  return writeAscii(out, at, shortestByPrecision(value, 5, (candidate) => toHalfBits(candidate) === bits))
}

/** Writes a float64 value as JSON text: JavaScript's own shortest round-trip form. */
export function writeFloat64 (out: Buffer, at: number, value: number): number {
  return Number.isFinite(value) ? writeAscii(out, at, String(value)) : writeNonFinite(out, at, value)
}

/** The slow, exact path: the first precision whose text reads back as the value. */
function shortestByPrecision (value: number, maxDigits: number, roundTrips: (candidate: number) => boolean): string {
  for (let precision = 1; precision < maxDigits; precision++) {
    const candidate = Number(value.toPrecision(precision))
    if (roundTrips(candidate)) return String(candidate)
  }
  return String(Number(value.toPrecision(maxDigits)))
}

const scratch = Buffer.alloc(MAX_FLOAT_TEXT_BYTES * 2)

/** The JSON text of a float32 value, as a string (for tests and single values). */
export function float32Text (value: number): string {
  return scratch.toString('latin1', 0, writeFloat32(scratch, 0, value))
}

/** The JSON text of a float16 value given as its bits, as a string. */
export function float16Text (bits: number): string {
  return scratch.toString('latin1', 0, writeFloat16(scratch, 0, bits))
}
