import { rmSync } from 'node:fs'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  writeClassifier, writeConstant, writeDivide, writeFailing, writeFixed, writeOcrRecognizer, writeRange, writeReduceSum, writeSpin,
  writeSplit, writeStrings, writeTabular, writeTextDirection, writeTypes, writeUnloadable
} from '../../scripts/models/catalog.js'

export type TestModel =
  | 'classifier' | 'tabular' | 'spin' | 'types' | 'fixed' | 'failing'
  | 'constant' | 'reduce_sum' | 'split' | 'range' | 'divide' | 'strings' | 'unloadable'
  | 'text_direction' | 'ocr_rec'

export interface ModelRepository {
  /** Absolute path of the repository root, for MODEL_REPOSITORY. */
  readonly dir: string
  /** `<dir>/<model>/<version>/model.onnx`. */
  modelPath: (model: string, version?: number) => string
  cleanup: () => Promise<void>
}

const WRITERS: Record<TestModel, (dir: string) => Promise<unknown>> = {
  classifier: async (dir) => { await writeClassifier(dir, 1); await writeClassifier(dir, 2) },
  tabular: writeTabular,
  spin: (dir) => writeSpin(dir),
  types: writeTypes,
  fixed: writeFixed,
  failing: writeFailing,
  constant: writeConstant,
  reduce_sum: writeReduceSum,
  split: writeSplit,
  range: writeRange,
  divide: writeDivide,
  strings: writeStrings,
  unloadable: writeUnloadable,
  text_direction: writeTextDirection,
  ocr_rec: writeOcrRecognizer
}

// The catalog's writers are deterministic, so each model is generated once per
// process and copied into every repository that asks for it.
let cacheDir: Promise<string> | undefined
const generated = new Map<TestModel, Promise<void>>()

function cache (): Promise<string> {
  cacheDir ??= mkdtemp(join(tmpdir(), 'spotgate-model-cache-')).then((dir) => {
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
    return dir
  })
  return cacheDir
}

async function generate (model: TestModel): Promise<string> {
  const dir = await cache()
  let done = generated.get(model)
  if (done === undefined) {
    done = WRITERS[model](dir).then(() => undefined)
    generated.set(model, done)
  }
  await done
  return join(dir, model)
}

/**
 * A temporary model repository holding `models` as the sample catalog writes them
 * (classifier with versions 1 and 2). `configs[model]` is merged over the model's
 * own config.json, e.g. `{ spin: { instance_count: 2 } }`.
 */
export async function makeRepository (models: readonly TestModel[], configs: Record<string, object> = {}): Promise<ModelRepository> {
  const dir = await mkdtemp(join(tmpdir(), 'spotgate-models-'))
  for (const model of new Set(models)) {
    await cp(await generate(model), join(dir, model), { recursive: true })
  }
  for (const [model, overrides] of Object.entries(configs)) {
    const path = join(dir, model, 'config.json')
    const existing = await readFile(path, 'utf8').then((text) => JSON.parse(text) as object, () => ({}))
    await writeFile(path, `${JSON.stringify({ ...existing, ...overrides }, null, 2)}\n`)
  }
  return {
    dir,
    modelPath: (model, version = 1) => join(dir, model, String(version), 'model.onnx'),
    cleanup: () => rm(dir, { recursive: true, force: true })
  }
}
