import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { bytesElementsLength, decodeBytesElements, encodeBytesElements } from '../../src/inference/bytes-elements.js'

/** Length-prefixed elements written by hand: [length, bytes] pairs, lengths as unsigned 32-bit little-endian. */
function layout (...elements: Array<[number, Buffer | string]>): Buffer {
  return Buffer.concat(elements.flatMap(([length, bytes]) => {
    const prefix = Buffer.alloc(4)
    prefix.writeUInt32LE(length)
    return [prefix, Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'utf8')]
  }))
}

describe('BYTES elements in the v2 binary layout', () => {
  const values = ['', 'yes', 'héllo ✓', '日本語 🙂', '\ufeffstarts with a BOM', 'x'.repeat(1000)]

  test('encode writes a 4-byte little-endian length before each element\'s UTF-8 bytes', () => {
    assert.deepEqual(Buffer.from(encodeBytesElements(['ab', '', 'é'])), layout([2, 'ab'], [0, ''], [2, 'é']))
    assert.equal(bytesElementsLength(values), encodeBytesElements(values).length)
  })

  test('decode gives back every string, empty, non-ASCII and BOM-led ones included', () => {
    assert.deepEqual(decodeBytesElements(encodeBytesElements(values), values.length), values)
    assert.deepEqual(decodeBytesElements(new Uint8Array(0), 0), [])
  })

  test('decode reads from a view at any offset', () => {
    const bytes = Buffer.concat([Buffer.from([9, 9, 9]), layout([3, 'abc'])])
    assert.deepEqual(decodeBytesElements(bytes.subarray(3), 1), ['abc'])
  })

  const hostile: Array<[string, Buffer, number, RegExp]> = [
    ['a length past the end', layout([10, 'abc']), 1, /element 0: length 10 runs past the end of the data \(3 bytes left\)/],
    ['a negative length', layout([0xffffffff, 'abc']), 1, /element 0: length 4294967295 \(-1 as a signed length\) runs past the end/],
    ['a huge length', layout([0x80000000, 'abc']), 1, /length 2147483648 \(-2147483648 as a signed length\)/],
    ['fewer elements than the shape holds', layout([1, 'a'], [1, 'b']), 3, /10 bytes cannot hold 3 BYTES elements|element 2/],
    ['a truncated length', Buffer.concat([layout([1, 'a']), Buffer.from([1, 0])]), 2, /7 bytes cannot hold 2 BYTES elements|element 1: its 4-byte length runs past the end/],
    ['more elements than the shape holds', layout([1, 'a'], [1, 'b']), 1, /5 bytes are left after the 1 BYTES elements of the shape/],
    ['a shape far larger than the data', layout([1, 'a']), 1_000_000_000, /5 bytes cannot hold 1000000000 BYTES elements/],
    ['invalid UTF-8', layout([2, Buffer.from([0xc3, 0x28])]), 1, /element 0 is not valid UTF-8/],
    ['an encoded surrogate', layout([3, Buffer.from([0xed, 0xa0, 0x80])]), 1, /element 0 is not valid UTF-8/],
    ['a NUL byte', layout([1, 'a'], [3, 'a\0b']), 2, /element 1 contains a NUL character/]
  ]
  for (const [what, bytes, count, message] of hostile) {
    test(`${what} is refused, naming the element`, () => {
      assert.throws(() => decodeBytesElements(bytes, count), message)
    })
  }

  test('a zero length is an empty element, not bytes left over', () => {
    const bytes = layout([1, 'a'], [0, ''])
    assert.deepEqual(decodeBytesElements(bytes, 2), ['a', ''])
    assert.throws(() => decodeBytesElements(bytes, 1), /4 bytes are left after the 1 BYTES elements/)
  })
})
