import assert from 'node:assert/strict'
import { test } from 'node:test'
import { buildTestApp } from '../helpers/app.js'
import { tensor } from '../helpers/requests.js'

/** failing: Reshape(x [rows, 4], shape); a shape that does not hold 4·rows elements makes onnxruntime throw. */
function failingBody (rows: number, shape: number[]) {
  const x = Array.from({ length: rows * 4 }, (_, i) => i)
  return { inputs: [tensor('x', 'FP32', [rows, 4], x), tensor('shape', 'INT64', [2], shape)] }
}

test('an onnxruntime failure is a 500 naming the failure, and the model keeps serving', async (t) => {
  const { app, metrics } = await buildTestApp(t, { models: ['failing'] })

  await t.test('a run that onnxruntime rejects answers 500 with {"error"} saying inference failed', async () => {
    const response = await app.inject({ method: 'POST', url: '/v2/models/failing/infer', payload: failingBody(1, [3, 5]) })
    assert.equal(response.statusCode, 500, response.body)
    assert.ok(response.headers['x-request-id'])
    const body = response.json<{ error: string }>()
    assert.deepEqual(Object.keys(body), ['error'])
    assert.match(body.error, /inference failed/)
    assert.match(body.error, /reshape/i, 'the error says what onnxruntime refused')
  })

  await t.test('the next request on the same model succeeds', async () => {
    const response = await app.inject({ method: 'POST', url: '/v2/models/failing/infer', payload: failingBody(2, [4, 2]) })
    assert.equal(response.statusCode, 200, response.body)
    const output = response.json().outputs[0]
    assert.deepEqual(output.shape, [4, 2])
    assert.deepEqual(output.data, [0, 1, 2, 3, 4, 5, 6, 7])
  })

  await t.test('failures and successes alternate without the model instance being replaced', async () => {
    for (let i = 0; i < 3; i++) {
      const failed = await app.inject({ method: 'POST', url: '/infer', payload: { model: 'failing', ...failingBody(1, [3, 5]) } })
      assert.equal(failed.statusCode, 500)
      const ok = await app.inject({ method: 'POST', url: '/infer', payload: { model: 'failing', ...failingBody(1, [-1, 2]) } })
      assert.equal(ok.statusCode, 200, ok.body)
      assert.deepEqual(ok.json().outputs[0].shape, [2, 2])
    }
    const text = await metrics.registry.metrics()
    assert.match(text, /^spotgate_requests_total\{model="failing",version="1",outcome="failed"\} 4$/m)
    assert.match(text, /^spotgate_requests_total\{model="failing",version="1",outcome="ok"\} 4$/m)
    assert.doesNotMatch(text, /^spotgate_model_instance_restarts_total\{[^}]*\} [1-9]/m)
  })
})
