import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { InjectOptions } from 'fastify'
import { buildTestApp } from '../helpers/app.js'
import { classifierBody, tabularBody, tensor, type V2Tensor } from '../helpers/requests.js'

const MAX_BODY_BYTES = 4096

/** A valid request for the types model (every input [1, 2]), with some inputs replaced. */
function typesBody (overrides: Record<string, Partial<V2Tensor>> = {}) {
  const inputs: V2Tensor[] = [
    tensor('f32', 'FP32', [1, 2], [1, 2]), tensor('f64', 'FP64', [1, 2], [1, 2]), tensor('f16', 'FP16', [1, 2], [1, 2]),
    tensor('i8', 'INT8', [1, 2], [1, 2]), tensor('u8', 'UINT8', [1, 2], [1, 2]), tensor('i16', 'INT16', [1, 2], [1, 2]),
    tensor('u16', 'UINT16', [1, 2], [1, 2]), tensor('i32', 'INT32', [1, 2], [1, 2]), tensor('i64', 'INT64', [1, 2], [1, 2]),
    tensor('b', 'BOOL', [1, 2], [true, false])
  ]
  return { inputs: inputs.map((input) => ({ ...input, ...overrides[input.name] })) }
}

/** A classifier request whose one input is replaced by `input`. */
function classifierWith (input: Record<string, unknown>) {
  return { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4], ...input }] }
}

interface Case {
  readonly name: string
  readonly url?: string
  readonly method?: 'POST' | 'GET'
  /** A JSON body; `raw` sends bytes as they are. */
  readonly body?: unknown
  readonly raw?: string
  readonly contentType?: string
  readonly status: number
  readonly error: RegExp
}

const V2 = '/v2/models/classifier/infer'

const CASES: Case[] = [
  // Not JSON, or not the right JSON.
  { name: 'malformed JSON is 400', raw: '{"inputs": [', contentType: 'application/json', status: 400, error: /JSON/i },
  { name: 'JSON nested past 64 levels is 400, refused before it is parsed', raw: '{"inputs":' + '['.repeat(1500) + ']'.repeat(1500) + '}', contentType: 'application/json', status: 400, error: /the JSON body nests arrays and objects more than 64 levels deep/ },
  { name: 'brackets inside strings do not count as nesting', raw: '{"inputs":[],"id":"' + '['.repeat(1000) + '"}', contentType: 'application/json', status: 400, error: /missing input 'input'/ },
  { name: 'a __proto__ key is 400 naming it', raw: '{"inputs":[],"__proto__":{"polluted":true}}', contentType: 'application/json', status: 400, error: /the JSON body has a "__proto__" or "constructor.prototype" key/ },
  { name: 'an empty body is 400', raw: '', contentType: 'application/json', status: 400, error: /empty/i },
  { name: 'a JSON array body is 400', raw: '[1,2]', contentType: 'application/json', status: 400, error: /request body must be a JSON object/ },
  { name: 'a JSON string body is 400', raw: '"infer"', contentType: 'application/json', status: 400, error: /request body must be a JSON object/ },
  { name: 'a JSON null body is 400', raw: 'null', contentType: 'application/json', status: 400, error: /request body must be a JSON object/ },
  { name: 'a non-object body on /infer is 400', url: '/infer', raw: '42', contentType: 'application/json', status: 400, error: /request body must be a JSON object/ },
  { name: '/infer without a model is 400', url: '/infer', body: classifierBody(1), status: 400, error: /model must be a non-empty string/ },
  { name: '/infer with a numeric model is 400', url: '/infer', body: classifierBody(1, { model: 7 }), status: 400, error: /model must be a non-empty string/ },
  { name: 'missing inputs are 400 naming the input', body: {}, status: 400, error: /missing input 'input'/ },
  { name: 'empty inputs are 400 naming the input', body: { inputs: [] }, status: 400, error: /missing input 'input'/ },
  { name: 'inputs as an object are 400', body: { inputs: { input: [1, 2, 3, 4] } }, status: 400, error: /inputs must be an array of tensors/ },
  { name: 'inputs as null are 400', body: { inputs: null }, status: 400, error: /inputs must be an array of tensors/ },
  { name: 'an input that is not an object is 400', body: { inputs: [42] }, status: 400, error: /inputs\[0\] must be an object/ },
  { name: 'an input without a name is 400', body: { inputs: [{ datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }, status: 400, error: /inputs\[0\]\.name must be a string/ },
  { name: 'a non-string id is 400', body: classifierBody(1, { id: 17 }), status: 400, error: /id must be a string/ },

  // Datatype.
  { name: 'a datatype other than the model\'s is 400', body: classifierWith({ datatype: 'INT32' }), status: 400, error: /input 'input': datatype INT32 does not match the model's FP32/ },
  { name: 'an unknown datatype is 400', body: classifierWith({ datatype: 'FP8' }), status: 400, error: /input 'input': datatype "FP8" is not a supported v2 datatype/ },
  { name: 'a missing datatype is 400', body: classifierWith({ datatype: undefined }), status: 400, error: /input 'input': datatype .* is not a supported v2 datatype/ },
  { name: 'a lowercase datatype is 400', body: classifierWith({ datatype: 'fp32' }), status: 400, error: /input 'input': datatype "fp32"/ },

  // Shape.
  { name: 'a shape that is not an array is 400', body: classifierWith({ shape: '1,4' }), status: 400, error: /input 'input': shape must be an array/ },
  { name: 'a lower rank is 400', body: classifierWith({ shape: [4] }), status: 400, error: /input 'input': shape \[4\] has rank 1, the model expects rank 2/ },
  { name: 'a higher rank is 400', body: classifierWith({ shape: [1, 4, 1] }), status: 400, error: /input 'input': .*has rank 3, the model expects rank 2/ },
  { name: 'a wrong fixed dimension is 400', body: classifierWith({ shape: [1, 5], data: [1, 2, 3, 4, 5] }), status: 400, error: /input 'input': shape\[1\] is 5, the model requires 4/ },
  { name: 'a wrong dimension of a fully fixed model is 400', url: '/v2/models/fixed/infer', body: { inputs: [tensor('x', 'FP32', [3, 2], [1, 2, 3, 4, 5, 6])] }, status: 400, error: /input 'x': shape\[0\] is 3, the model requires 2/ },
  { name: 'a negative dimension is 400', body: classifierWith({ shape: [-1, 4] }), status: 400, error: /input 'input': shape\[0\] must be an integer from 0 .* got -1/ },
  { name: 'a zero dimension with data is 400', body: classifierWith({ shape: [0, 4] }), status: 400, error: /input 'input': data has 4 values, shape \[0,4\] needs 0/ },
  { name: 'a zero fixed dimension is 400', body: classifierWith({ shape: [1, 0], data: [] }), status: 400, error: /input 'input': shape\[1\] is 0, the model requires 4/ },
  { name: 'a fractional dimension is 400', body: classifierWith({ shape: [1.5, 4] }), status: 400, error: /input 'input': shape\[0\] .* got 1\.5/ },
  { name: 'a dimension given as a string is 400', body: classifierWith({ shape: ['1', 4] }), status: 400, error: /input 'input': shape\[0\] .* got "1"/ },
  { name: 'a huge dimension is 400 without allocating it', body: classifierWith({ shape: [1e12, 4] }), status: 400, error: /input 'input': shape\[0\] .* got 1000000000000/ },
  { name: 'a huge batch within the dimension limit is 400 without allocating it', body: classifierWith({ shape: [2 ** 31 - 1, 4] }), status: 400, error: /input 'input': batch of 2147483647 rows exceeds the model's max_batch_size 32/ },
  { name: 'a huge dimension on a model without batching is 400 without allocating it', url: '/v2/models/failing/infer', body: { inputs: [tensor('x', 'FP32', [2 ** 31 - 1, 4], [1, 2, 3, 4]), tensor('shape', 'INT64', [2], [1, 4])] }, status: 400, error: /input 'x': data has 4 values, shape \[2147483647,4\] needs 8589934588/ },
  { name: 'a batch above max_batch_size is 400', body: classifierBody(33), status: 400, error: /input 'input': batch of 33 rows exceeds the model's max_batch_size 32/ },

  // Data.
  { name: 'too few values for the shape is 400', body: classifierWith({ shape: [2, 4] }), status: 400, error: /input 'input': data has 4 values, shape \[2,4\] needs 8/ },
  { name: 'too many values for the shape is 400', body: classifierWith({ data: [1, 2, 3, 4, 5] }), status: 400, error: /input 'input': data has 5 values, shape \[1,4\] needs 4/ },
  { name: 'data that is not an array is 400', body: classifierWith({ data: '1,2,3,4' }), status: 400, error: /input 'input': data must be a flat array of 4 values/ },
  { name: 'missing data is 400', body: classifierWith({ data: undefined }), status: 400, error: /input 'input': data must be a flat array/ },
  { name: 'nested data with the wrong count is 400, saying data must be flat', body: classifierWith({ data: [[1, 2], [3, 4]] }), status: 400, error: /input 'input': data has 2 values, shape \[1,4\] needs 4 \(data must be flat, in row-major order: it is an array of arrays\)/ },
  { name: 'nested data with the right count is 400', body: classifierWith({ data: [[1], [2], [3], [4]] }), status: 400, error: /input 'input': data\[0\] is a nested array/ },
  { name: 'a non-numeric value is 400', body: classifierWith({ data: [1, 2, 'three', 4] }), status: 400, error: /input 'input': data\[2\] is "three", expected a number \(FP32\)/ },
  { name: 'a numeric string in FP32 is 400', body: classifierWith({ data: ['1.5', 2, 3, 4] }), status: 400, error: /input 'input': data\[0\] is "1\.5", expected a number/ },
  { name: 'null in FP32 data is 400', body: classifierWith({ data: [1, null, 3, 4] }), status: 400, error: /input 'input': data\[1\] is null/ },
  { name: 'a boolean in FP32 data is 400', body: classifierWith({ data: [1, 2, 3, true] }), status: 400, error: /input 'input': data\[3\] is true/ },
  { name: 'an object in FP32 data is 400', body: classifierWith({ data: [1, 2, { v: 3 }, 4] }), status: 400, error: /input 'input': data\[2\] is \{"v":3\}/ },
  { name: 'an FP32 value beyond float range is 400', body: classifierWith({ data: [1, 2, 3, 1e39] }), status: 400, error: /input 'input': data\[3\].*range of FP32/ },
  { name: 'INT8 300 is 400', url: '/v2/models/types/infer', body: typesBody({ i8: { data: [300, 0] } }), status: 400, error: /input 'i8': data\[0\] is 300, expected an integer within the range of INT8/ },
  { name: 'UINT8 -1 is 400', url: '/v2/models/types/infer', body: typesBody({ u8: { data: [0, -1] } }), status: 400, error: /input 'u8': data\[1\] is -1, expected an integer within the range of UINT8/ },
  { name: 'INT16 40000 is 400', url: '/v2/models/types/infer', body: typesBody({ i16: { data: [40000, 0] } }), status: 400, error: /input 'i16': data\[0\] is 40000/ },
  { name: 'a fractional INT32 is 400', url: '/v2/models/types/infer', body: typesBody({ i32: { data: [1, 2.5] } }), status: 400, error: /input 'i32': data\[1\] is 2\.5/ },
  { name: 'INT64 beyond 2^63 is 400', url: '/v2/models/types/infer', body: typesBody({ i64: { data: ['9223372036854775808', 0] } }), status: 400, error: /input 'i64': data\[0\].*INT64/ },
  { name: 'an INT64 beyond 2^53 as a JSON number is 400, pointing at decimal strings', url: '/v2/models/types/infer', body: typesBody({ i64: { data: [2 ** 53 + 2, 0] } }), status: 400, error: /input 'i64': data\[0\] .*at most 2\^53 as a JSON number; send larger INT64 values as decimal strings/ },
  { name: 'a binary_data_output that is not a boolean is 400', body: classifierBody(1, { parameters: { binary_data_output: 'yes' } }), status: 400, error: /parameters\.binary_data_output must be true or false, not "yes"/ },
  { name: 'an INT64 that is not a decimal integer is 400', url: '/v2/models/types/infer', body: typesBody({ i64: { data: ['0x10', 0] } }), status: 400, error: /input 'i64': data\[0\] is "0x10"/ },
  { name: 'FP16 beyond half range is 400', url: '/v2/models/types/infer', body: typesBody({ f16: { data: [70000, 0] } }), status: 400, error: /input 'f16': data\[0\].*range of FP16/ },
  { name: 'a non-boolean BOOL is 400', url: '/v2/models/types/infer', body: typesBody({ b: { data: [1, 0] } }), status: 400, error: /input 'b': data\[0\] is 1, expected true or false/ },
  { name: 'a BOOL given as a string is 400', url: '/v2/models/types/infer', body: typesBody({ b: { data: [true, 'false'] } }), status: 400, error: /input 'b': data\[1\] is "false", expected true or false/ },
  { name: 'a number in BYTES data is 400', url: '/v2/models/strings/infer', body: { inputs: [tensor('text', 'BYTES', [1, 2], ['a', 1])] }, status: 400, error: /input 'text': data\[1\] is 1, expected a string \(BYTES\)/ },
  { name: 'a lone surrogate in BYTES data is 400', url: '/v2/models/strings/infer', raw: '{"inputs":[{"name":"text","datatype":"BYTES","shape":[1,2],"data":["\\udfff","a"]}]}', contentType: 'application/json', status: 400, error: /input 'text': data\[0\] contains a lone UTF-16 surrogate/ },
  { name: 'a NUL in BYTES data is 400', url: '/v2/models/strings/infer', body: { inputs: [tensor('text', 'BYTES', [1, 2], ['a\u0000', 'b'])] }, status: 400, error: /input 'text': data\[0\] contains a NUL character/ },
  { name: 'FP32 data given as BYTES is 400', body: classifierWith({ datatype: 'BYTES', data: ['1', '2', '3', '4'] }), status: 400, error: /input 'input': datatype BYTES does not match the model's FP32/ },
  { name: 'a non-finite float spelled another way is 400', body: classifierWith({ data: [1, 2, 3, 'inf'] }), status: 400, error: /input 'input': data\[3\] is "inf", expected a number \(FP32\), or "NaN", "Infinity" or "-Infinity"/ },
  { name: 'an input to a model without inputs is 400', url: '/v2/models/constant/infer', body: { inputs: [tensor('x', 'FP32', [1], [1])] }, status: 400, error: /input 'x' is not an input of this model \(it has no inputs\)/ },
  { name: 'binary data parameters in a JSON request are 400', body: classifierWith({ parameters: { binary_data_size: 16 } }), status: 400, error: /input 'input': binary_data_size/ },

  // Inputs and outputs as a set.
  { name: 'an unknown input is 400', body: { inputs: [tensor('pixels', 'FP32', [1, 4], [1, 2, 3, 4])] }, status: 400, error: /input 'pixels' is not an input of this model \(inputs: input\)/ },
  { name: 'an input given twice is 400', body: { inputs: [tensor('input', 'FP32', [1, 4], [1, 2, 3, 4]), tensor('input', 'FP32', [1, 4], [1, 2, 3, 4])] }, status: 400, error: /input 'input' is given more than once/ },
  { name: 'a missing input is 400', url: '/v2/models/tabular/infer', body: { inputs: [tensor('features', 'FP32', [1, 3], [1, 2, 3])] }, status: 400, error: /missing input 'category'/ },
  { name: 'inputs with different batch sizes are 400', url: '/v2/models/tabular/infer', body: tabularBody([[1, 2, 3], [4, 5, 6]], [1]), status: 400, error: /input 'category' has 1 rows but input 'features' has 2/ },
  { name: 'an unknown requested output is 400', body: { ...classifierBody(1), outputs: [{ name: 'logits' }] }, status: 400, error: /output 'logits' is not an output of this model \(outputs: probabilities\)/ },
  { name: 'requested outputs that are not an array are 400', body: { ...classifierBody(1), outputs: 'probabilities' }, status: 400, error: /outputs must be an array/ },

  // Models and versions.
  { name: 'an unknown model on /infer is 404', url: '/infer', body: classifierBody(1, { model: 'resnet' }), status: 404, error: /unknown model 'resnet'/ },
  { name: 'an unknown model on the v2 route is 404', url: '/v2/models/resnet/infer', body: classifierBody(1), status: 404, error: /unknown model 'resnet'/ },
  { name: 'an unknown version on /infer is 404', url: '/infer', body: classifierBody(1, { model: 'classifier', version: 7 }), status: 404, error: /model 'classifier' has no version '7' \(versions: 1, 2\)/ },
  { name: 'an unknown version on the v2 route is 404', url: '/v2/models/classifier/versions/7/infer', body: classifierBody(1), status: 404, error: /model 'classifier' has no version '7'/ },
  { name: 'a non-numeric version is 404', url: '/infer', body: classifierBody(1, { model: 'classifier', version: 'latest' }), status: 404, error: /no version 'latest'/ },
  { name: 'a fractional version is 400', url: '/infer', body: classifierBody(1, { model: 'classifier', version: 1.5 }), status: 400, error: /version must be a string or an integer/ },
  { name: 'a boolean version is 400', url: '/infer', body: classifierBody(1, { model: 'classifier', version: true }), status: 400, error: /version must be a string or an integer/ },
  { name: 'an object version is 400', url: '/infer', body: classifierBody(1, { model: 'classifier', version: { v: 1 } }), status: 400, error: /version must be a string or an integer/ },

  // Names that try to leave the repository.
  { name: 'an encoded ../ in the model name is 404', url: '/v2/models/..%2F..%2Fetc/infer', body: classifierBody(1), status: 404, error: /unknown model '\.\.\/\.\.\/etc'/ },
  { name: 'an encoded .. model name is 404', url: '/v2/models/%2e%2e/infer', body: classifierBody(1), status: 404, error: /unknown model '\.\.'|no route POST \/v2\/infer/ },
  { name: 'an encoded ../ in the version is 404', url: '/v2/models/classifier/versions/..%2F1/infer', body: classifierBody(1), status: 404, error: /no version '\.\.\/1'/ },
  { name: 'a path as the model on /infer is 404', url: '/infer', body: classifierBody(1, { model: '../../etc/passwd' }), status: 404, error: /unknown model '\.\.\/\.\.\/etc\/passwd'/ },
  { name: 'a NUL byte in the model name is 404', url: '/v2/models/classifier%00/infer', body: classifierBody(1), status: 404, error: /unknown model/ },
  { name: 'a path in the metadata route is 404', method: 'GET', url: '/v2/models/..%2Fclassifier', status: 404, error: /unknown model '\.\.\/classifier'/ },
  { name: 'a 300-character model name is 404 with the name shortened', url: `/v2/models/${'a'.repeat(300)}/infer`, body: classifierBody(1), status: 404, error: /^unknown model 'a{64}…'$/ },
  { name: 'a 5000-character model name is 404', url: `/v2/models/${'a'.repeat(5000)}/infer`, body: classifierBody(1), status: 404, error: /^no route POST \/v2\/models\/a{10}/ },
  { name: 'malformed percent-encoding in the model name is 400', url: '/v2/models/%zz/infer', body: classifierBody(1), status: 400, error: /not valid/ },
  { name: 'a 3000-character model name on /infer is 404 with the name shortened', url: '/infer', body: classifierBody(1, { model: 'b'.repeat(3000) }), status: 404, error: /^unknown model 'b{64}…'$/ },

  // Transport.
  { name: 'a body over MAX_BODY_BYTES is 413', body: classifierBody(1, { padding: 'x'.repeat(MAX_BODY_BYTES) }), status: 413, error: new RegExp(`exceeds the limit of ${MAX_BODY_BYTES} bytes`) },
  { name: 'text/plain is 415', raw: JSON.stringify(classifierBody(1)), contentType: 'text/plain', status: 415, error: /content type "text\/plain" is not supported; send application\/json/ },
  { name: 'a form body is 415', raw: 'inputs=1', contentType: 'application/x-www-form-urlencoded', status: 415, error: /content type "application\/x-www-form-urlencoded" is not supported/ },
  { name: 'a body without a content type is 415', raw: JSON.stringify(classifierBody(1)), status: 415, error: /content type \(none\) is not supported/ }
]

test('bad requests get the contract\'s status and an error naming the problem, and the server stays up', async (t) => {
  const { app, metrics } = await buildTestApp(t, {
    models: ['classifier', 'tabular', 'types', 'fixed', 'failing', 'strings', 'constant'],
    env: { MAX_BODY_BYTES: String(MAX_BODY_BYTES) }
  })

  for (const c of CASES) {
    await t.test(c.name, async () => {
      const options: InjectOptions = { method: c.method ?? 'POST', url: c.url ?? V2 }
      if (c.raw !== undefined) {
        options.payload = c.raw
        options.headers = c.contentType === undefined ? {} : { 'content-type': c.contentType }
      } else if (c.body !== undefined) {
        options.payload = JSON.stringify(c.body)
        options.headers = { 'content-type': 'application/json' }
      }
      const response = await app.inject(options)
      assert.equal(response.statusCode, c.status, `status for ${c.name}: ${response.body.slice(0, 300)}`)
      assert.match(String(response.headers['content-type']), /^application\/json/)
      assert.ok(response.headers['x-request-id'], 'X-Request-Id')
      const body = response.json<{ error?: unknown }>()
      assert.deepEqual(Object.keys(body), ['error'], `only {"error"}: ${response.body.slice(0, 300)}`)
      assert.equal(typeof body.error, 'string')
      assert.match(body.error as string, c.error)
      assert.ok((body.error as string).length < 400, `error message is short: ${(body.error as string).length} characters`)
    })
  }

  await t.test('after the whole battery a valid request still succeeds', async () => {
    const response = await app.inject({ method: 'POST', url: V2, payload: classifierBody(2) })
    assert.equal(response.statusCode, 200, response.body)
    assert.deepEqual(response.json().outputs[0].shape, [2, 3])
    const live = await app.inject({ method: 'GET', url: '/health/live' })
    assert.equal(live.statusCode, 200)
  })

  await t.test('rejected requests are counted as invalid or not_found, never as failed', async () => {
    const text = await metrics.registry.metrics()
    assert.match(text, /^spotgate_requests_total\{model="classifier",version="2",outcome="invalid"\} [1-9]\d*$/m)
    assert.match(text, /outcome="not_found"\} [1-9]\d*$/m)
    assert.doesNotMatch(text, /outcome="failed"/)
  })
})
