// Node 20 has no Float16Array, so FP16 tensors travel as raw half-precision bits.

/**
 * The nearest half-precision value to `value` (ties to even), as bits. Rounds from
 * the double directly: going through float32 first would round twice and can land
 * one unit off when a value sits just above a halfway point.
 */
export function toHalfBits (value: number): number {
  if (Number.isNaN(value)) return 0x7e00
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0
  const magnitude = Math.abs(value)
  // 65520 lies halfway between the largest half (65504) and 2^16; ties to even overflow.
  if (magnitude >= 65520) return sign | 0x7c00
  // Below 2^-14 halves are subnormal, multiples of 2^-24; 1024 of them carry into the smallest normal.
  if (magnitude < 2 ** -14) return sign | roundHalfEven(magnitude * 2 ** 24)
  let exponent = Math.floor(Math.log2(magnitude))
  if (2 ** exponent > magnitude) exponent--
  else if (2 ** (exponent + 1) <= magnitude) exponent++
  // Scaling by a power of two is exact, so the 11-bit significand is rounded once.
  const significand = roundHalfEven(magnitude * 2 ** (10 - exponent))
  // A significand that rounds up to 2048 carries into the exponent: the bits add up the same way.
  return sign | (((exponent + 15) << 10) + significand - 1024)
}

function roundHalfEven (x: number): number {
  const floor = Math.floor(x)
  const fraction = x - floor
  if (fraction > 0.5 || (fraction === 0.5 && floor % 2 === 1)) return floor + 1
  return floor
}

export function fromHalfBits (half: number): number {
  const sign = half & 0x8000 ? -1 : 1
  const exponent = (half >>> 10) & 0x1f
  const mantissa = half & 0x3ff
  if (exponent === 0) return sign * mantissa * 2 ** -24
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
}
