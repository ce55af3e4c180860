// Node 20 has no Float16Array, so FP16 tensors travel as raw half-precision bits.
const scratch = new DataView(new ArrayBuffer(4))

export function toHalfBits (value: number): number {
  scratch.setFloat32(0, value)
  const bits = scratch.getUint32(0)
  const sign = (bits >>> 16) & 0x8000
  const exponent = (bits >>> 23) & 0xff
  let mantissa = bits & 0x7fffff
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0)
  const halfExponent = exponent - 127 + 15
  if (halfExponent >= 0x1f) return sign | 0x7c00
  if (halfExponent <= 0) {
    if (halfExponent < -10) return sign
    mantissa |= 0x800000
    const shift = 14 - halfExponent
    let half = mantissa >>> shift
    const remainder = mantissa & ((1 << shift) - 1)
    const halfway = 1 << (shift - 1)
    if (remainder > halfway || (remainder === halfway && (half & 1) === 1)) half++
    return sign | half
  }
  let half = (halfExponent << 10) | (mantissa >>> 13)
  const remainder = mantissa & 0x1fff
  if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1) === 1)) half++
  return sign | half
}

export function fromHalfBits (half: number): number {
  const sign = half & 0x8000 ? -1 : 1
  const exponent = (half >>> 10) & 0x1f
  const mantissa = half & 0x3ff
  if (exponent === 0) return sign * mantissa * 2 ** -24
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
}
