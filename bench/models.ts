import { join } from 'node:path'
import { MLP_LAYERS, writeClassifier, writeMlp } from '../scripts/models/catalog.js'

// The two models the bench serves, each in a repository of its own so a gateway run
// loads (and spends memory on) only the model it measures.

export interface BenchModel {
  readonly name: string
  /** Repository root for MODEL_REPOSITORY. */
  readonly repo: string
  /** The ONNX file, for the raw onnxruntime ceiling. */
  readonly path: string
  readonly input: string
  readonly output: string
  readonly inputWidth: number
  readonly outputWidth: number
}

export async function writeBenchModels (root: string): Promise<{ tiny: BenchModel, mlp: BenchModel }> {
  const tinyRepo = join(root, 'tiny')
  const mlpRepo = join(root, 'mlp')
  return {
    tiny: { name: 'classifier', repo: tinyRepo, path: await writeClassifier(tinyRepo, 1), input: 'input', output: 'probabilities', inputWidth: 4, outputWidth: 3 },
    mlp: { name: 'mlp', repo: mlpRepo, path: await writeMlp(mlpRepo), input: 'input', output: 'logits', inputWidth: MLP_LAYERS[0], outputWidth: MLP_LAYERS[MLP_LAYERS.length - 1] }
  }
}
