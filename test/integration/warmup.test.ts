import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { buildTestApp } from '../helpers/app.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository } from '../helpers/model-repo.js'
import { tensor } from '../helpers/requests.js'
import type { Metrics } from '../../src/metrics.js'

// Warm-up on real models that reject all-zero inputs: `divide` (integer a / b, so zeros
// divide by zero) and `range` (Range(start, limit, delta) with a zero delta). A failed
// warm-up is a warning and a metric; the model still loads and serves.

async function warmupFailures (metrics: Metrics, model: string): Promise<number> {
  const text = await metrics.registry.metrics()
  const match = new RegExp(`^spotgate_model_warmup_failures_total\\{model="${model}",version="1"\\} (\\d+)$`, 'm').exec(text)
  return Number(match?.[1] ?? 0)
}

const RANGE_INPUTS = [tensor('start', 'INT64', [], [0]), tensor('limit', 'INT64', [], [3]), tensor('delta', 'INT64', [], [1])]

describe('a warm-up that fails does not stop the model', () => {
  test('integer division by zero on the zero warm-up: counted, and the model serves real requests', async (t) => {
    const { app, metrics, state } = await buildTestApp(t, { models: ['divide', 'classifier'], env: { MODEL_INSTANCES: '2' } })
    assert.equal(await warmupFailures(metrics, 'divide'), 2, 'one failed warm-up run per instance')
    assert.equal(await warmupFailures(metrics, 'classifier'), 0)
    assert.deepEqual(state.unreadyReasons(), [])
    const response = await app.inject({
      method: 'POST',
      url: '/v2/models/divide/infer',
      payload: { inputs: [tensor('a', 'INT32', [2, 2], [7, 9, -8, 100]), tensor('b', 'INT32', [2, 2], [2, 3, 3, 7])] }
    })
    assert.equal(response.statusCode, 200, response.body)
    assert.deepEqual(response.json().outputs[0].data, [3, 3, -2, 14])
    const byZero = await app.inject({
      method: 'POST',
      url: '/v2/models/divide/infer',
      payload: { inputs: [tensor('a', 'INT32', [1, 2], [1, 1]), tensor('b', 'INT32', [1, 2], [1, 0])] }
    })
    assert.equal(byZero.statusCode, 500, 'a request that divides by zero fails alone, as it would in onnxruntime')
    assert.match(byZero.json().error, /division by zero/i)
  })

  test('the process logs a warning naming the model and the error, reports ready and serves', async (t) => {
    const repo = await makeRepository(['divide'])
    t.after(repo.cleanup)
    const gateway = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: repo.dir } })
    await gateway.waitReady()
    const warning = (await gateway.waitForLog((line) => String(line.json?.msg).startsWith('warm-up run of divide/1 failed'))).json ?? {}
    assert.equal(warning.level, 40, 'logged at warn')
    assert.equal(warning.model, 'divide')
    assert.match(String(warning.reason), /division by zero/i)
    const response = await gateway.post('/v2/models/divide/infer', { inputs: [tensor('a', 'INT32', [1, 2], [9, 8]), tensor('b', 'INT32', [1, 2], [3, 2])] })
    assert.equal(response.status, 200)
    assert.deepEqual((await response.json() as { outputs: Array<{ data: number[] }> }).outputs[0].data, [3, 4])
    assert.match(await (await gateway.fetch('/metrics')).text(), /^spotgate_model_warmup_failures_total\{model="divide",version="1"\} 1$/m)
  })

  test('"warmup": false runs nothing', async (t) => {
    const { metrics } = await buildTestApp(t, { models: ['divide', 'range'], configs: { divide: { warmup: false }, range: { warmup: false } } })
    assert.equal(await warmupFailures(metrics, 'divide'), 0)
    assert.equal(await warmupFailures(metrics, 'range'), 0)
  })
})

describe('warm-up inputs given in config.json or beside it', () => {
  test('inline inputs replace the zeros: Range warms up on a delta of 1 without failing', async (t) => {
    const { app, metrics } = await buildTestApp(t, { models: ['range'], configs: { range: { warmup: { inputs: RANGE_INPUTS } } } })
    assert.equal(await warmupFailures(metrics, 'range'), 0)
    const response = await app.inject({ method: 'POST', url: '/v2/models/range/infer', payload: { inputs: RANGE_INPUTS } })
    assert.deepEqual(response.json().outputs[0].data, [0, 1, 2])
  })

  test('without them the same model fails its zero warm-up (so the inputs above are what ran)', async (t) => {
    const { metrics } = await buildTestApp(t, { models: ['range'] })
    assert.equal(await warmupFailures(metrics, 'range'), 1)
  })

  test('inputs_file: a file of v2 tensors beside config.json', async (t) => {
    const repo = await makeRepository(['range'], { range: { warmup: { inputs_file: 'warmup.json' } } })
    t.after(repo.cleanup)
    await writeFile(join(repo.dir, 'range', 'warmup.json'), JSON.stringify({ inputs: RANGE_INPUTS }))
    const { metrics } = await buildTestApp(t, { models: [], repository: repo })
    assert.equal(await warmupFailures(metrics, 'range'), 0)
  })

  test('"zero_data": true stands for data, and zero inputs that fail are still only a warning', async (t) => {
    const zeroStart = { name: 'start', datatype: 'INT64', shape: [], zero_data: true }
    const ok = await buildTestApp(t, { models: ['range'], configs: { range: { warmup: { inputs: [zeroStart, RANGE_INPUTS[1], RANGE_INPUTS[2]] } } } })
    assert.equal(await warmupFailures(ok.metrics, 'range'), 0)
    const allZero = ['start', 'limit', 'delta'].map((name) => ({ name, datatype: 'INT64', shape: [], zero_data: true }))
    const failing = await buildTestApp(t, { models: ['range'], configs: { range: { warmup: { inputs: allZero } } } })
    assert.equal(await warmupFailures(failing.metrics, 'range'), 1)
  })

  test('string and batched inputs warm up too', async (t) => {
    const { metrics } = await buildTestApp(t, {
      models: ['strings', 'classifier'],
      configs: {
        strings: { warmup: { inputs: [tensor('text', 'BYTES', [2, 2], ['yes', 'no', 'é', ''])] } },
        classifier: { warmup: { inputs: [{ name: 'input', datatype: 'FP32', shape: [32, 4], zero_data: true }] } }
      }
    })
    assert.equal(await warmupFailures(metrics, 'strings'), 0)
    assert.equal(await warmupFailures(metrics, 'classifier'), 0)
  })
})

describe('a warm-up spec that does not fit the model is a configuration error naming its file', () => {
  const cases: Array<[string, unknown[], RegExp]> = [
    ['an input the model does not have', [...RANGE_INPUTS, tensor('step', 'INT64', [], [1])], /input 'step' is not an input of this model \(inputs: start, limit, delta\)/],
    ['a missing input', RANGE_INPUTS.slice(0, 2), /missing input 'delta'/],
    ['another datatype', [tensor('start', 'INT32', [], [0]), ...RANGE_INPUTS.slice(1)], /input 'start': datatype INT32 does not match the model's INT64/],
    ['another shape', [tensor('start', 'INT64', [1], [0]), ...RANGE_INPUTS.slice(1)], /input 'start': shape \[1\] has rank 1, the model expects rank 0/],
    ['too few values', [tensor('start', 'INT64', [], []), ...RANGE_INPUTS.slice(1)], /input 'start': data has 0 values, shape \[\] needs 1/],
    ['binary parameters', [{ ...RANGE_INPUTS[0], parameters: { binary_data_size: 8 } }, ...RANGE_INPUTS.slice(1)], /inputs\[0\] may give data or "zero_data": true, not parameters/],
    ['zero_data next to data', [{ ...RANGE_INPUTS[0], zero_data: true }, ...RANGE_INPUTS.slice(1)], /inputs\[0\]: zero_data must be true, and stands instead of data/]
  ]
  for (const [what, inputs, message] of cases) {
    test(`inline: ${what}`, async (t) => {
      await assert.rejects(buildTestApp(t, { models: ['range'], configs: { range: { warmup: { inputs } } } }), (error: Error) => {
        assert.equal(error.name, 'ConfigError')
        assert.match(error.message, /^MODEL_REPOSITORY: \S+\/range\/config\.json: warm-up inputs: /)
        assert.match(error.message, message)
        return true
      })
    })
  }

  test('a file that does not fit names the file', async (t) => {
    const repo = await makeRepository(['range'], { range: { warmup: { inputs_file: 'warmup.json' } } })
    t.after(repo.cleanup)
    const file = join(repo.dir, 'range', 'warmup.json')
    await writeFile(file, JSON.stringify({ inputs: RANGE_INPUTS.slice(1) }))
    await assert.rejects(buildTestApp(t, { models: [], repository: repo }), { name: 'ConfigError', message: `MODEL_REPOSITORY: ${file}: warm-up inputs: missing input 'start'` })
  })

  test('a missing file, a file that is not JSON, and JSON that is not {"inputs": [...]} name the file', async (t) => {
    const repo = await makeRepository(['range'], { range: { warmup: { inputs_file: 'warmup.json' } } })
    t.after(repo.cleanup)
    const file = join(repo.dir, 'range', 'warmup.json')
    await assert.rejects(buildTestApp(t, { models: [], repository: repo }), { name: 'ConfigError', message: new RegExp(`^MODEL_REPOSITORY: cannot read warm-up inputs ${file}: .*ENOENT`) })
    await writeFile(file, '{"inputs": [')
    await assert.rejects(buildTestApp(t, { models: [], repository: repo }), { name: 'ConfigError', message: new RegExp(`^MODEL_REPOSITORY: ${file} is not valid JSON`) })
    await writeFile(file, JSON.stringify(RANGE_INPUTS))
    await assert.rejects(buildTestApp(t, { models: [], repository: repo }), { name: 'ConfigError', message: `MODEL_REPOSITORY: ${file}: must be a JSON object {"inputs": [v2 tensors]}` })
  })
})
