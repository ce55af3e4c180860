import assert from 'node:assert/strict'
import { test } from 'node:test'
import { excessiveDepth, MAX_JSON_DEPTH } from '../../src/json-depth.js'

const bytes = (text: string): Buffer => Buffer.from(text, 'utf8')

test('nesting up to the limit passes; one level more is reported', () => {
  const nested = (depth: number): Buffer => bytes('['.repeat(depth) + ']'.repeat(depth))
  assert.equal(excessiveDepth(nested(MAX_JSON_DEPTH)), undefined)
  assert.equal(excessiveDepth(nested(MAX_JSON_DEPTH + 1)), MAX_JSON_DEPTH + 1)
  assert.equal(excessiveDepth(bytes('{"a":{"b":{"c":[1]}}}'), 3), 4)
  assert.equal(excessiveDepth(bytes('{"a":{"b":{"c":[1]}}}'), 4), undefined)
})

test('siblings do not add up: depth is how deep, not how many', () => {
  assert.equal(excessiveDepth(bytes('[' + '[1],'.repeat(10_000) + '[2]]'), 2), undefined)
})

test('brackets in strings, escaped quotes and backslashes do not count', () => {
  assert.equal(excessiveDepth(bytes('["[[[[{{{{"]'), 1), undefined)
  assert.equal(excessiveDepth(bytes('["a\\"[[[[", "\\\\", [1]]'), 2), undefined)
  assert.equal(excessiveDepth(bytes('["\\\\", [[1]]]'), 2), 3, 'an escaped backslash ends its escape')
  assert.equal(excessiveDepth(bytes('["é[", "日本[[[[", [1]]'), 2), undefined, 'multi-byte UTF-8 in strings')
})

test('only the given byte range is scanned', () => {
  const text = bytes('[[[[]]]]' + '[1]')
  assert.equal(excessiveDepth(text, 1, 8), undefined)
  assert.equal(excessiveDepth(text, 1, 0, 8), 2)
})
