import { join } from 'node:path'
import { MLP_LAYERS, TEXT_DIRECTION_SIZE, writeClassifier, writeMlp, writeTextDirection } from '../scripts/models/catalog.js'

// The models the bench serves, each in a repository of its own so a gateway run
// loads (and spends memory on) only the model it measures.

export interface BenchModel {
  readonly name: string
  /** Repository root for MODEL_REPOSITORY. */
  readonly repo: string
  /** The ONNX file, for the raw onnxruntime ceiling. */
  readonly path: string
  readonly input: string
  readonly output: string
  /** Shape of one row of the input, the batch dimension left out. */
  readonly rowShape: readonly number[]
  /** Elements in one row of the input. */
  readonly inputWidth: number
  readonly outputWidth: number
}

export interface BenchModels {
  readonly tiny: BenchModel
  readonly mlp: BenchModel
  /** PaddleOCR's text-direction classifier: a real MobileNetV3 CNN, one 48×192 RGB crop per row. */
  readonly cnn: BenchModel
}

function model (fields: Omit<BenchModel, 'inputWidth'>): BenchModel {
  return { ...fields, inputWidth: fields.rowShape.reduce((a, b) => a * b, 1) }
}

export async function writeBenchModels (root: string): Promise<BenchModels> {
  const tinyRepo = join(root, 'tiny')
  const mlpRepo = join(root, 'mlp')
  const cnnRepo = join(root, 'cnn')
  return {
    tiny: model({ name: 'classifier', repo: tinyRepo, path: await writeClassifier(tinyRepo, 1), input: 'input', output: 'probabilities', rowShape: [4], outputWidth: 3 }),
    mlp: model({ name: 'mlp', repo: mlpRepo, path: await writeMlp(mlpRepo), input: 'input', output: 'logits', rowShape: [MLP_LAYERS[0]], outputWidth: MLP_LAYERS[MLP_LAYERS.length - 1] }),
    cnn: model({ name: 'text_direction', repo: cnnRepo, path: await writeTextDirection(cnnRepo), input: 'x', output: 'softmax_0.tmp_0', rowShape: [3, ...TEXT_DIRECTION_SIZE], outputWidth: 2 })
  }
}
