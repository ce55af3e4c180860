import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { ConfigError } from '../../src/config-error.js'
import { parseModelConfig, type ModelConfig } from '../../src/inference/model-repository.js'

const DEFAULTS: ModelConfig = Object.freeze<ModelConfig>({
  maxBatchSize: 32,
  dynamicBatching: true,
  maxQueueDelayMicros: 500,
  preferredBatchSizes: [],
  maxQueueSize: 1024,
  instanceCount: 2,
  intraOpThreads: 1,
  executionProviders: ['cuda', 'cpu'],
  cudaDeviceId: 0,
  warmup: true
})

const PATH = '/models/m/config.json'

function parse (raw: unknown): ModelConfig {
  return parseModelConfig(raw, DEFAULTS, PATH)
}

describe('model config.json', () => {
  test('an empty object keeps every server default', () => {
    assert.deepEqual(parse({}), DEFAULTS)
  })

  test('every setting overrides its default', () => {
    const config = parse({
      max_batch_size: 8,
      dynamic_batching: { max_queue_delay_microseconds: 2000, preferred_batch_size: [8, 4] },
      max_queue_size: 10,
      instance_count: 3,
      intra_op_threads: 0,
      execution_providers: ['cpu'],
      cuda_device_id: 1,
      warmup: false
    })
    assert.deepEqual(config, {
      maxBatchSize: 8,
      dynamicBatching: true,
      maxQueueDelayMicros: 2000,
      preferredBatchSizes: [4, 8],
      maxQueueSize: 10,
      instanceCount: 3,
      intraOpThreads: 0,
      executionProviders: ['cpu'],
      cudaDeviceId: 1,
      warmup: false
    })
  })

  test('dynamic_batching false turns batching off; true keeps the defaults', () => {
    assert.equal(parse({ dynamic_batching: false }).dynamicBatching, false)
    assert.deepEqual(parse({ dynamic_batching: true }), DEFAULTS)
    assert.deepEqual(parse({ dynamic_batching: {} }), DEFAULTS)
  })

  test('warmup takes inline v2 tensors, noting config.json as their source', () => {
    const inputs = [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }]
    assert.deepEqual(parse({ warmup: { inputs } }).warmup, { inputs, source: PATH })
  })

  test('warmup.inputs_file resolves beside config.json', () => {
    assert.deepEqual(parse({ warmup: { inputs_file: 'warmup.json' } }).warmup, { inputsFile: '/models/m/warmup.json' })
    assert.deepEqual(parse({ warmup: { inputs_file: './warm/up.json' } }).warmup, { inputsFile: '/models/m/warm/up.json' })
  })

  test('max_batch_size 0 is accepted (no batching)', () => {
    assert.equal(parse({ max_batch_size: 0 }).maxBatchSize, 0)
  })

  const rejected: Array<[string, unknown, RegExp]> = [
    ['a JSON array', [], /must be a JSON object/],
    ['null', null, /must be a JSON object/],
    ['an unknown setting', { max_batch: 4 }, /unknown setting "max_batch"/],
    ['a negative max_batch_size', { max_batch_size: -1 }, /max_batch_size must be an integer from 0 to 65536/],
    ['a fractional max_batch_size', { max_batch_size: 1.5 }, /max_batch_size/],
    ['a string max_batch_size', { max_batch_size: '8' }, /max_batch_size/],
    ['instance_count 0', { instance_count: 0 }, /instance_count must be an integer from 1 to 256/],
    ['more instances than MODEL_INSTANCES allows', { instance_count: 1e12 }, /instance_count must be an integer from 1 to 256/],
    ['more threads than INTRA_OP_THREADS allows', { intra_op_threads: 1e9 }, /intra_op_threads must be an integer from 0 to 1024/],
    ['a max_batch_size past MAX_BATCH_SIZE\'s bound', { max_batch_size: 1e300 }, /max_batch_size must be an integer from 0 to 65536/],
    ['a max_queue_size past a million', { max_queue_size: 1e300 }, /max_queue_size must be an integer from 1 to 1000000/],
    ['a cuda_device_id past 1023', { cuda_device_id: 1e9 }, /cuda_device_id must be an integer from 0 to 1023/],
    ['max_queue_size 0', { max_queue_size: 0 }, /max_queue_size/],
    ['a negative cuda_device_id', { cuda_device_id: -1 }, /cuda_device_id/],
    ['dynamic_batching as a string', { dynamic_batching: 'yes' }, /dynamic_batching must be true, false or an object/],
    ['an unknown dynamic_batching setting', { dynamic_batching: { delay: 1 } }, /unknown setting "dynamic_batching.delay"/],
    ['a negative queue delay', { dynamic_batching: { max_queue_delay_microseconds: -1 } }, /max_queue_delay_microseconds/],
    ['a queue delay over ten seconds', { dynamic_batching: { max_queue_delay_microseconds: 10_000_001 } }, /max_queue_delay_microseconds/],
    ['preferred batch sizes with a zero', { dynamic_batching: { preferred_batch_size: [0, 4] } }, /preferred_batch_size/],
    ['preferred batch size not an array', { dynamic_batching: { preferred_batch_size: 4 } }, /preferred_batch_size/],
    ['an unknown execution provider', { execution_providers: ['tpu'] }, /execution_providers/],
    ['an empty execution provider list', { execution_providers: [] }, /execution_providers/],
    ['execution providers as a string', { execution_providers: 'cpu' }, /execution_providers/],
    ['a null max_batch_size', { max_batch_size: null }, /max_batch_size must be an integer from 0 to 65536/],
    ['dynamic_batching null', { dynamic_batching: null }, /dynamic_batching must be true, false or an object/],
    ['a fractional preferred batch size', { dynamic_batching: { preferred_batch_size: [2.5] } }, /dynamic_batching.preferred_batch_size must be an array of positive integers/],
    ['warmup null', { warmup: null }, /warmup must be true, false/],
    ['warmup as a string', { warmup: 'no' }, /warmup must be true, false, \{"inputs": \[v2 tensors\]\} or \{"inputs_file"/],
    ['warmup as an empty object', { warmup: {} }, /warmup must be true, false/],
    ['warmup with both inputs and a file', { warmup: { inputs: [], inputs_file: 'w.json' } }, /warmup must be true, false/],
    ['warmup inputs that are not an array', { warmup: { inputs: { x: [1] } } }, /warmup.inputs must be an array of v2 tensors/],
    ['an unknown warmup setting', { warmup: { inputs: [], batch_size: 4 } }, /unknown setting "warmup.batch_size"/],
    ['a warmup file outside the model directory', { warmup: { inputs_file: '../other/warmup.json' } }, /warmup.inputs_file "..\/other\/warmup.json" must name a file inside the model's directory/],
    ['an absolute warmup file', { warmup: { inputs_file: '/etc/passwd' } }, /must name a file inside the model's directory/],
    ['an empty warmup file name', { warmup: { inputs_file: '' } }, /warmup.inputs_file must be the name of a JSON file/]
  ]
  for (const [what, raw, pattern] of rejected) {
    test(`${what} is rejected with a ConfigError naming the file`, () => {
      assert.throws(() => parse(raw), (error: unknown) => {
        assert.ok(error instanceof ConfigError)
        assert.ok(error.message.startsWith(`MODEL_REPOSITORY: ${PATH}: `), error.message)
        assert.match(error.message, pattern)
        return true
      })
    })
  }
})
