import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { after, before, describe, test } from 'node:test'
import { DataType, attr, encodeModel, floatTensor, graph, int64Tensor, model, node, valueInfo } from '../../scripts/models/onnx-builder.js'
import { Batcher, type BatchPolicy } from '../../src/inference/batcher.js'
import { Cancellation } from '../../src/inference/cancellation.js'
import { InstancePool } from '../../src/inference/instance-pool.js'
import type { ModelConfig } from '../../src/inference/model-repository.js'
import type { Tensor } from '../../src/inference/signature.js'
import { makeRepository, type ModelRepository } from '../helpers/model-repo.js'
import { tabularScore } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'

// The dynamic batcher over real worker threads running real onnxruntime sessions.
// Every pool has one instance, so "one run" is observable and ordering is deterministic.

const CONFIG: ModelConfig = {
  maxBatchSize: 32,
  dynamicBatching: true,
  maxQueueDelayMicros: 500,
  preferredBatchSizes: [],
  maxQueueSize: 1024,
  instanceCount: 1,
  intraOpThreads: 1,
  executionProviders: ['cpu'],
  cudaDeviceId: 0,
  warmup: true
}

const POLICY: BatchPolicy = { merge: true, maxBatchSize: 32, maxQueueDelayMicros: 50_000, preferredBatchSizes: [], maxQueueSize: 1024 }

/** Slack for timers and thread hand-offs on a busy CI machine. */
const SLACK_MS = allow(80)

interface Observed { rows: number, requests: number }

const pools: InstancePool[] = []
let repo: ModelRepository
let extraDir: string

async function startPool (name: string, path: string): Promise<InstancePool> {
  const { pool } = await InstancePool.start({ name, version: '1', path, config: CONFIG }, 'thread')
  pools.push(pool)
  return pool
}

/** A batcher over `pool` that records every run it starts; its pool listener goes when the test ends. */
function batcherOn (t: { after: (fn: () => void) => void }, pool: InstancePool, policy: Partial<BatchPolicy> = {}): { batcher: Batcher, runs: Observed[] } {
  const runs: Observed[] = []
  const before = new Set(pool.listeners('idle'))
  const batcher = new Batcher(pool, { ...POLICY, ...policy }, { batchStarted: (rows, requests) => runs.push({ rows, requests }) })
  const added = pool.listeners('idle').filter((listener) => !before.has(listener))
  t.after(() => { for (const listener of added) pool.off('idle', listener as () => void) })
  return { batcher, runs }
}

const f32 = (name: string, shape: number[], values: number[]): Tensor => ({ name, datatype: 'FP32', shape, data: Float32Array.from(values) })
const i64 = (name: string, shape: number[], values: number[]): Tensor => ({ name, datatype: 'INT64', shape, data: BigInt64Array.from(values.map(BigInt)) })
const classifierInput = (seed: number): Tensor[] => [f32('input', [1, 4], [seed, seed / 2, -seed, 1])]

/** wide: x FP32 [batch, width] → y = 2·x, both dimensions dynamic; no catalog model has a dynamic non-batch dimension. */
async function writeWide (dir: string): Promise<string> {
  const g = graph({
    name: 'wide',
    inputs: [valueInfo('x', DataType.FLOAT, ['batch', 'width'])],
    outputs: [valueInfo('y', DataType.FLOAT, ['batch', 'width'])],
    initializers: [floatTensor('two', [], [2])],
    nodes: [node('Mul', ['x', 'two'], ['y'])]
  })
  return writeModelFile(dir, 'wide', g)
}

/**
 * lookup: index INT64 [batch, 1] → value FP32 [batch, 1] = table[index], table = [10, 20, 30, 40].
 * Batchable, and onnxruntime fails the whole run when any row's index is out of range: the
 * catalog's `failing` model has an input without a batch dimension, so it never batches.
 */
async function writeLookup (dir: string): Promise<string> {
  const g = graph({
    name: 'lookup',
    inputs: [valueInfo('index', DataType.INT64, ['batch', 1])],
    outputs: [valueInfo('value', DataType.FLOAT, ['batch', 1])],
    initializers: [floatTensor('table', [4], [10, 20, 30, 40])],
    nodes: [node('Gather', ['table', 'index'], ['value'])]
  })
  return writeModelFile(dir, 'lookup', g)
}

/**
 * column_sum: x FP32 [batch, 2] → y FP32 [one, 2] = ReduceSum over the first axis. Every
 * dimension is dynamic, so it looks batchable, but its output does not follow the batch.
 */
async function writeColumnSum (dir: string): Promise<string> {
  const g = graph({
    name: 'column_sum',
    inputs: [valueInfo('x', DataType.FLOAT, ['batch', 2])],
    outputs: [valueInfo('y', DataType.FLOAT, ['one', 2])],
    initializers: [int64Tensor('axes', [1], [0])],
    nodes: [node('ReduceSum', ['x', 'axes'], ['y'], [attr.int('keepdims', 1)])]
  })
  return writeModelFile(dir, 'column_sum', g)
}

async function writeModelFile (dir: string, name: string, g: ReturnType<typeof graph>): Promise<string> {
  const path = join(dir, name, '1', 'model.onnx')
  await mkdir(join(dir, name, '1'), { recursive: true })
  await writeFile(path, encodeModel(model(g)))
  return path
}

let classifier: InstancePool
let tabular: InstancePool
let types: InstancePool
let wide: InstancePool
let lookup: InstancePool
let columnSum: InstancePool

before(async () => {
  repo = await makeRepository(['classifier', 'tabular', 'types'])
  extraDir = await mkdtemp(join(tmpdir(), 'spotgate-batcher-models-'))
  ;[classifier, tabular, types, wide, lookup, columnSum] = await Promise.all([
    startPool('classifier', repo.modelPath('classifier')),
    startPool('tabular', repo.modelPath('tabular')),
    startPool('types', repo.modelPath('types')),
    startPool('wide', await writeWide(extraDir)),
    startPool('lookup', await writeLookup(extraDir)),
    startPool('column_sum', await writeColumnSum(extraDir))
  ])
})

after(async () => {
  await Promise.all(pools.map((pool) => pool.close()))
  await repo?.cleanup()
  if (extraDir !== undefined) await rm(extraDir, { recursive: true, force: true })
})

describe('merging and splitting', () => {
  test('single-row requests that arrive together run as one batch', async (t) => {
    const { batcher, runs } = batcherOn(t, classifier)
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => batcher.submit(classifierInput(i))))
    // One run of eight rows for the eight requests: each was in it.
    assert.deepEqual(runs, [{ rows: 8, requests: 8 }])
    for (const result of results) {
      assert.deepEqual(result.outputs.map((o) => [o.name, o.shape]), [['probabilities', [1, 3]]])
    }
  })

  test('each request gets back its own rows, equal to what it gets when run alone', async (t) => {
    const { batcher: merging, runs } = batcherOn(t, tabular)
    const { batcher: alone } = batcherOn(t, tabular, { merge: false })
    // Requests of 1, 2, 1 and 3 rows, each with its own values.
    const requests = [1, 2, 1, 3].map((rows, r) => {
      const features = Array.from({ length: rows }, (_, i) => [r + i, r - i, 0.5 * i + r])
      const categories = Array.from({ length: rows }, (_, i) => r * 10 + i)
      return { features, categories, inputs: [f32('features', [rows, 3], features.flat()), i64('category', [rows, 1], categories)] }
    })
    const merged = await Promise.all(requests.map((r) => merging.submit(r.inputs)))
    assert.deepEqual(runs, [{ rows: 7, requests: 4 }])
    const single = await Promise.all(requests.map((r) => alone.submit(r.inputs)))
    requests.forEach((request, index) => {
      const score = merged[index].outputs[0]
      assert.equal(score.name, 'score')
      assert.deepEqual(score.shape, [request.features.length, 1])
      assert.deepEqual(Array.from(score.data as Float32Array), request.features.map((f, i) => tabularScore(f, request.categories[i])))
      assert.deepEqual(Array.from(score.data as Float32Array), Array.from(single[index].outputs[0].data as Float32Array))
    })
  })

  test('merged requests asking for different outputs each get only the outputs they asked for', async (t) => {
    const { batcher, runs } = batcherOn(t, types)
    const inputs = (seed: number): Tensor[] => [
      f32('f32', [1, 2], [seed, seed + 0.5]),
      { name: 'f64', datatype: 'FP64', shape: [1, 2], data: Float64Array.from([seed, -seed]) },
      { name: 'f16', datatype: 'FP16', shape: [1, 2], data: Uint16Array.from([0x3c00, 0x4000]) },
      { name: 'i8', datatype: 'INT8', shape: [1, 2], data: Int8Array.from([seed, -seed]) },
      { name: 'u8', datatype: 'UINT8', shape: [1, 2], data: Uint8Array.from([seed, 255]) },
      { name: 'i16', datatype: 'INT16', shape: [1, 2], data: Int16Array.from([seed, -300]) },
      { name: 'u16', datatype: 'UINT16', shape: [1, 2], data: Uint16Array.from([seed, 60000]) },
      { name: 'i32', datatype: 'INT32', shape: [1, 2], data: Int32Array.from([seed, -70000]) },
      i64('i64', [1, 2], [seed, -seed]),
      { name: 'b', datatype: 'BOOL', shape: [1, 2], data: Uint8Array.from([seed % 2, 1]) }
    ]
    const [first, second, all] = await Promise.all([
      batcher.submit(inputs(1), ['f32_out']),
      batcher.submit(inputs(2), ['i64_out', 'b_out']),
      batcher.submit(inputs(3))
    ])
    assert.deepEqual(runs, [{ rows: 3, requests: 3 }])
    assert.deepEqual(first.outputs.map((o) => o.name), ['f32_out'])
    assert.deepEqual(Array.from(first.outputs[0].data as Float32Array), [1, 1.5])
    assert.deepEqual(second.outputs.map((o) => o.name).sort(), ['b_out', 'i64_out'])
    assert.deepEqual(Array.from(second.outputs.find((o) => o.name === 'i64_out')?.data as BigInt64Array), [2n, -2n])
    assert.deepEqual(Array.from(second.outputs.find((o) => o.name === 'b_out')?.data as Uint8Array), [0, 1])
    assert.equal(all.outputs.length, 10)
    assert.deepEqual(Array.from(all.outputs.find((o) => o.name === 'u16_out')?.data as Uint16Array), [3, 60000])
  })

  test('requests whose non-batch dimensions differ are never merged into one run', async (t) => {
    const { batcher, runs } = batcherOn(t, wide)
    const narrow = (v: number): Tensor[] => [f32('x', [1, 2], [v, v + 1])]
    const broad = (v: number): Tensor[] => [f32('x', [1, 3], [v, v + 1, v + 2])]
    const results = await Promise.all([batcher.submit(narrow(1)), batcher.submit(broad(10)), batcher.submit(narrow(2)), batcher.submit(broad(20))])
    assert.deepEqual(runs, [{ rows: 2, requests: 2 }, { rows: 2, requests: 2 }], 'one run per width, each merging its two requests')
    assert.deepEqual(results.map((r) => r.outputs[0].shape), [[1, 2], [1, 3], [1, 2], [1, 3]])
    assert.deepEqual(results.map((r) => Array.from(r.outputs[0].data as Float32Array)), [[2, 4], [20, 22, 24], [4, 6], [40, 42, 44]])
  })
})

describe('when a batch closes', () => {
  test('a lone request waits for company no longer than max_queue_delay (plus scheduling slack)', async (t) => {
    const delayMs = 20
    const { batcher, runs } = batcherOn(t, classifier, { maxQueueDelayMicros: delayMs * 1000 })
    for (let i = 0; i < 3; i++) {
      const started = performance.now()
      const result = await batcher.submit(classifierInput(i))
      const elapsed = performance.now() - started
      assert.ok(result.timing.queueMs >= delayMs - 1, `waited ${result.timing.queueMs.toFixed(1)} ms for company, the delay is ${delayMs} ms`)
      assert.ok(result.timing.queueMs <= delayMs + SLACK_MS, `queued ${result.timing.queueMs.toFixed(1)} ms, bound ${delayMs} ms + ${SLACK_MS} ms`)
      assert.ok(elapsed <= delayMs + SLACK_MS, `answered after ${elapsed.toFixed(1)} ms, bound ${delayMs} ms + ${SLACK_MS} ms`)
    }
    assert.deepEqual(runs, [{ rows: 1, requests: 1 }, { rows: 1, requests: 1 }, { rows: 1, requests: 1 }])
  })

  test('with max_queue_delay 0 a request is handed to an idle instance at once', async (t) => {
    const { batcher } = batcherOn(t, classifier, { maxQueueDelayMicros: 0 })
    const result = await batcher.submit(classifierInput(1))
    assert.ok(result.timing.queueMs < allow(20), `queued ${result.timing.queueMs.toFixed(2)} ms`)
  })

  test('a batch never exceeds max_batch_size rows, and a full batch does not wait out the delay', async (t) => {
    const { batcher, runs } = batcherOn(t, classifier, { maxBatchSize: 4, maxQueueDelayMicros: 1_000_000 })
    const started = performance.now()
    await Promise.all(Array.from({ length: 8 }, (_, i) => batcher.submit(classifierInput(i))))
    const elapsed = performance.now() - started
    assert.deepEqual(runs, [{ rows: 4, requests: 4 }, { rows: 4, requests: 4 }])
    assert.ok(elapsed < allow(500), `two full batches took ${elapsed.toFixed(0)} ms; the 1 s delay must not apply to them`)
  })

  test('multi-row requests that would overflow max_batch_size go to separate runs', async (t) => {
    const { batcher, runs } = batcherOn(t, classifier, { maxBatchSize: 4, maxQueueDelayMicros: 10_000 })
    const three = (seed: number): Tensor[] => [f32('input', [3, 4], Array.from({ length: 12 }, (_, i) => seed + i))]
    const results = await Promise.all([batcher.submit(three(0)), batcher.submit(three(1))])
    assert.deepEqual(runs, [{ rows: 3, requests: 1 }, { rows: 3, requests: 1 }])
    assert.deepEqual(results.map((r) => r.outputs[0].shape), [[3, 3], [3, 3]])
  })

  test('reaching a preferred batch size closes the batch without waiting out the delay', async (t) => {
    const { batcher, runs } = batcherOn(t, classifier, { preferredBatchSizes: [3], maxQueueDelayMicros: 2_000_000 })
    const started = performance.now()
    await Promise.all([batcher.submit(classifierInput(1)), batcher.submit(classifierInput(2)), batcher.submit(classifierInput(3))])
    const elapsed = performance.now() - started
    assert.deepEqual(runs, [{ rows: 3, requests: 3 }])
    assert.ok(elapsed < allow(1000), `a preferred-size batch waited ${elapsed.toFixed(0)} ms; the 2 s delay must not apply`)
  })
})

describe('the batch lane', () => {
  test('batch lines wait while online requests are queued: every online request queued behind a batch run starts before any queued batch line', async (t) => {
    const { batcher } = batcherOn(t, classifier, { maxBatchSize: 1, maxQueueDelayMicros: 0 })
    const order: string[] = []
    const submit = (name: string, lane: 'online' | 'batch'): Promise<unknown> =>
      batcher.submit(classifierInput(order.length), undefined, { lane, onStart: () => order.push(name) })
    // Ten batch lines queue first; online requests arrive after the first one started.
    const lines = Array.from({ length: 10 }, (_, i) => submit(`b${i}`, 'batch'))
    await new Promise((resolve) => setImmediate(resolve))
    const online = Array.from({ length: 3 }, (_, i) => submit(`o${i}`, 'online'))
    await Promise.all([...lines, ...online])
    const firstOnline = order.indexOf('o0')
    assert.ok(firstOnline <= 1, `an online request started after ${firstOnline} batch lines: ${order.join(' ')}`)
    assert.deepEqual(order.filter((name) => name.startsWith('o')), ['o0', 'o1', 'o2'])
    assert.deepEqual(order.slice(firstOnline, firstOnline + 3), ['o0', 'o1', 'o2'], `online requests ran back to back: ${order.join(' ')}`)
  })

  test('batch lines neither fill the online queue (no 429) nor count in its depth', async (t) => {
    const { batcher } = batcherOn(t, classifier, { maxQueueSize: 2, maxQueueDelayMicros: 0 })
    const lines = Array.from({ length: 8 }, (_, i) => batcher.submit(classifierInput(i), undefined, { lane: 'batch' }))
    assert.equal(batcher.depth, 0)
    assert.equal(batcher.hasRoom, true)
    const results = await Promise.all(lines)
    assert.equal(results.length, 8)
  })

  test('batch lines merge with each other into runs of up to max_batch_size rows, each getting its own rows', async (t) => {
    const { batcher, runs } = batcherOn(t, tabular, { maxBatchSize: 4, maxQueueDelayMicros: 0 })
    const row = (i: number): Tensor[] => [f32('features', [1, 3], [i, 1, 0]), i64('category', [1, 1], [i % 3])]
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => batcher.submit(row(i), undefined, { lane: 'batch' })))
    results.forEach((result, i) => assert.equal((result.outputs[0].data as Float32Array)[0], tabularScore([i, 1, 0], i % 3)))
    assert.ok(runs.every((run) => run.rows <= 4), JSON.stringify(runs))
    assert.ok(runs.length < 8, `lines were merged: ${JSON.stringify(runs)}`)
  })

  test('a cancelled batch line leaves its lane without running', async (t) => {
    const { batcher, runs } = batcherOn(t, classifier, { maxBatchSize: 1, maxQueueDelayMicros: 0 })
    const cancellation = new Cancellation()
    const first = batcher.submit(classifierInput(1), undefined, { lane: 'batch' })
    const second = batcher.submit(classifierInput(2), undefined, { lane: 'batch', cancellation })
    cancellation.cancel(new Error('handed back'))
    await assert.rejects(second, /handed back/)
    await first
    assert.equal(runs.length, 1)
  })
})

describe('leaving the queue', () => {
  test('cancelling a queued request takes it out of the queue; the others run without it', async (t) => {
    const { batcher, runs } = batcherOn(t, classifier, { maxQueueDelayMicros: 100_000 })
    const cancellation = new Cancellation()
    const first = batcher.submit(classifierInput(1))
    const second = batcher.submit(classifierInput(2), undefined, { cancellation })
    const third = batcher.submit(classifierInput(3))
    assert.equal(batcher.depth, 3)
    const reason = new Error('handed off')
    cancellation.cancel(reason)
    assert.equal(batcher.depth, 2)
    await assert.rejects(second, (error) => error === reason)
    const [a, c] = await Promise.all([first, third])
    // The two left ran together, as one run of two rows.
    assert.deepEqual(runs, [{ rows: 2, requests: 2 }])
    assert.ok(a.outputs.length > 0 && c.outputs.length > 0)
  })

  test('a request cancelled before it is submitted is refused without queueing', async (t) => {
    const { batcher, runs } = batcherOn(t, classifier)
    const reason = new Error('already gone')
    const cancellation = new Cancellation()
    cancellation.cancel(reason)
    await assert.rejects(batcher.submit(classifierInput(1), undefined, { cancellation }), (error) => error === reason)
    assert.equal(batcher.depth, 0)
    assert.deepEqual(runs, [])
  })

  test('cancelling a request that already runs changes nothing: its batch finishes and answers it', async (t) => {
    const { batcher, runs } = batcherOn(t, classifier, { maxQueueDelayMicros: 0 })
    const cancellation = new Cancellation()
    let started!: () => void
    const handedOver = new Promise<void>((resolve) => { started = resolve })
    const running = batcher.submit(classifierInput(1), undefined, { cancellation, onStart: started })
    await handedOver
    assert.equal(batcher.depth, 0)
    cancellation.cancel(new Error('too late'))
    const result = await running
    assert.equal(result.outputs[0].shape[1], 3)
    assert.deepEqual(runs, [{ rows: 1, requests: 1 }])
  })

  test('onStart fires when the request is handed to an instance, not before', async (t) => {
    const { batcher } = batcherOn(t, classifier, { maxQueueDelayMicros: 30_000 })
    let started = false
    const pending = batcher.submit(classifierInput(1), undefined, { onStart: () => { started = true } })
    assert.equal(started, false, 'still waiting for company')
    await pending
    assert.equal(started, true)
  })
})

describe('failures', () => {
  const index = (values: number[]): Tensor[] => [i64('index', [values.length, 1], values)]

  test('a failing merged batch is retried one request at a time, so only the bad request fails', async (t) => {
    const { batcher, runs } = batcherOn(t, lookup, { maxBatchSize: 2, maxQueueDelayMicros: 50_000 })
    // The first two fill a batch (one bad index among them) and start at once; the next two queue behind it.
    const bad = batcher.submit(index([99]))
    const goodInBadBatch = batcher.submit(index([1]))
    const next = [batcher.submit(index([0])), batcher.submit(index([3]))]
    await assert.rejects(bad, /out of (data )?bounds|indices/i)
    const good = await goodInBadBatch
    assert.deepEqual(Array.from(good.outputs[0].data as Float32Array), [20], 'a good request merged with a bad one still gets its answer')
    const [zero, three] = await Promise.all(next)
    assert.deepEqual(Array.from(zero.outputs[0].data as Float32Array), [10])
    assert.deepEqual(Array.from(three.outputs[0].data as Float32Array), [40])
    // The failed batch first; then the retries of its two requests alone and the next batch, in whichever order the worker frees up.
    assert.deepEqual(runs[0], { rows: 2, requests: 2 })
    assert.deepEqual(runs.slice(1).map((r) => r.rows).sort(), [1, 1, 2])
    assert.equal(lookup.size, 1, 'the model instance survives a failed run')
  })

  test('a model whose output does not follow the batch stops merging, and each request gets its own answer', async (t) => {
    const stopped: string[] = []
    const runs: Observed[] = []
    const before = new Set(columnSum.listeners('idle'))
    const batcher = new Batcher(columnSum, POLICY, { batchStarted: (rows, requests) => runs.push({ rows, requests }), mergingStopped: (reason) => stopped.push(reason) })
    t.after(() => { for (const listener of columnSum.listeners('idle')) if (!before.has(listener)) columnSum.off('idle', listener as () => void) })
    const rows = (values: number[]): Tensor[] => [f32('x', [values.length / 2, 2], values)]
    const first = await Promise.all([batcher.submit(rows([1, 2, 3, 4])), batcher.submit(rows([10, 20]))])
    assert.deepEqual(first.map((r) => Array.from(r.outputs[0].data as Float32Array)), [[4, 6], [10, 20]])
    assert.deepEqual(stopped, ['output \'y\' has 1 rows for a batch of 3 rows'])
    const later = await Promise.all([batcher.submit(rows([1, 1])), batcher.submit(rows([2, 2, 3, 3]))])
    assert.deepEqual(later.map((r) => Array.from(r.outputs[0].data as Float32Array)), [[1, 1], [5, 5]])
    assert.deepEqual(runs.map((r) => r.requests), [2, 1, 1, 1, 1], 'one merged run, then every request alone')
  })
})
