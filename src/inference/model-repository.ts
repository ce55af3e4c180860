import { access, constants, readdir, readFile, stat } from 'node:fs/promises'
import { dirname, isAbsolute, join, relative, resolve } from 'node:path'
import { ConfigError } from '../config-error.js'
import type { ExecutionProvider } from './providers.js'
import { checkModelConfig, type ModelConfigFile } from './model-config-schema.js'

/** Per-model settings, from `config.json` over the server-wide defaults. */
export interface ModelConfig {
  /** Largest batch one run may take; 0 turns batching off. */
  readonly maxBatchSize: number
  readonly dynamicBatching: boolean
  readonly maxQueueDelayMicros: number
  readonly preferredBatchSizes: readonly number[]
  readonly maxQueueSize: number
  readonly instanceCount: number
  readonly intraOpThreads: number
  readonly executionProviders: readonly ExecutionProvider[]
  readonly cudaDeviceId: number
  readonly warmup: WarmupSetting
}

/**
 * What each model instance runs once before the server reports ready: `true`, every
 * input zero-filled (dynamic dimensions as 1); `false`, nothing; or v2 tensors given in
 * config.json or in a JSON file beside it.
 */
export type WarmupSetting = boolean | WarmupInputs | WarmupFile

export interface WarmupInputs {
  /** v2 tensors, as in a request's `inputs`; `"zero_data": true` may stand for `data`. */
  readonly inputs: readonly unknown[]
  /** The file they came from, for error messages. */
  readonly source: string
}

export interface WarmupFile {
  /** Absolute path of a JSON file holding `{"inputs": [...]}`, read when the model loads. */
  readonly inputsFile: string
}

export interface ModelVersionEntry {
  readonly name: string
  readonly version: string
  readonly path: string
  readonly config: ModelConfig
  /** Why the version cannot load, found while scanning (a bad config.json, a missing model.onnx). */
  readonly problem?: string
}

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
const VERSION = /^[1-9][0-9]{0,8}$/

type Defaults = ModelConfig

/**
 * The folders in `dir`, symbolic links to folders included: Kubernetes mounts ConfigMaps
 * and projected volumes as links, and a repository may link a model from elsewhere.
 */
async function subdirectories (dir: string): Promise<string[]> {
  const found: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) found.push(entry.name)
    else if (entry.isSymbolicLink() && (await stat(join(dir, entry.name)).catch(() => undefined))?.isDirectory() === true) found.push(entry.name)
  }
  return found
}

/**
 * Lists every `<model>/<version>/model.onnx` under `root`. A repository that cannot be
 * read is a ConfigError; a model version that is malformed (its config.json, its
 * model.onnx) is listed with the ConfigError's message as its `problem`, so the
 * registry applies MODEL_LOAD_FAILURE to it like to any version that fails to load.
 */
export async function scanModelRepository (root: string, defaults: Defaults): Promise<ModelVersionEntry[]> {
  let names: string[]
  try {
    await access(root, constants.R_OK | constants.X_OK)
    names = (await subdirectories(root)).sort()
  } catch (error) {
    throw new ConfigError(`MODEL_REPOSITORY: cannot read ${root}: ${(error as Error).message}`)
  }
  const entries: ModelVersionEntry[] = []
  const skipped: string[] = []
  for (const name of names) {
    if (!MODEL_NAME.test(name)) {
      skipped.push(`${JSON.stringify(name.slice(0, 60))} (a model name is 1-128 of A-Z a-z 0-9 _ . -, starting with a letter or digit)`)
      continue
    }
    const dir = join(root, name)
    let config = defaults
    let configProblem: string | undefined
    try {
      config = await readModelConfig(join(dir, 'config.json'), defaults)
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      configProblem = error.message
    }
    const folders = await subdirectories(dir)
    for (const folder of folders) if (!VERSION.test(folder)) skipped.push(`${name}/${JSON.stringify(folder.slice(0, 60))} (a version is a whole number from 1, without leading zeros)`)
    const versions = folders.filter((folder) => VERSION.test(folder)).sort((a, b) => Number(a) - Number(b))
    for (const version of versions) {
      const path = join(dir, version, 'model.onnx')
      let problem = configProblem
      if (problem === undefined) {
        try {
          await access(path, constants.R_OK)
        } catch {
          problem = `MODEL_REPOSITORY: ${path} is missing or unreadable`
        }
      }
      entries.push({ name, version, path, config, ...(problem !== undefined && { problem }) })
    }
  }
  if (entries.length === 0) {
    const why = skipped.length === 0 ? '' : `; skipped: ${skipped.slice(0, 5).join(', ')}${skipped.length > 5 ? ` and ${skipped.length - 5} more` : ''}`
    throw new ConfigError(`MODEL_REPOSITORY: no models found in ${root} (expected <model>/<version>/model.onnx)${why}`)
  }
  return entries
}

async function readModelConfig (path: string, defaults: Defaults): Promise<ModelConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return defaults
    throw new ConfigError(`MODEL_REPOSITORY: cannot read ${path}: ${(error as Error).message}`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (error) {
    throw new ConfigError(`MODEL_REPOSITORY: ${path} is not valid JSON: ${(error as Error).message}`)
  }
  return parseModelConfig(raw, defaults, path)
}

/** A parsed config.json over the defaults; a ConfigError naming the file and the field when its schema refuses it. */
export function parseModelConfig (raw: unknown, defaults: Defaults, path = 'config.json'): ModelConfig {
  const checked = checkModelConfig(raw)
  if ('problem' in checked) throw new ConfigError(`MODEL_REPOSITORY: ${path}: ${checked.problem}`)
  const { file } = checked
  const batching = file.dynamic_batching
  const batchingSettings = typeof batching === 'object' ? batching : {}
  const preferred = batchingSettings.preferred_batch_size
  return {
    maxBatchSize: file.max_batch_size ?? defaults.maxBatchSize,
    dynamicBatching: batching === false ? false : defaults.dynamicBatching,
    maxQueueDelayMicros: batchingSettings.max_queue_delay_microseconds ?? defaults.maxQueueDelayMicros,
    preferredBatchSizes: preferred === undefined ? defaults.preferredBatchSizes : [...preferred].sort((a, b) => a - b),
    maxQueueSize: file.max_queue_size ?? defaults.maxQueueSize,
    instanceCount: file.instance_count ?? defaults.instanceCount,
    intraOpThreads: file.intra_op_threads ?? defaults.intraOpThreads,
    executionProviders: file.execution_providers ?? defaults.executionProviders,
    cudaDeviceId: file.cuda_device_id ?? defaults.cudaDeviceId,
    warmup: file.warmup === undefined ? defaults.warmup : warmupSetting(file.warmup, path)
  }
}

/** config.json's warmup, which the schema took: a file it names must be inside the model's directory. */
function warmupSetting (warmup: NonNullable<ModelConfigFile['warmup']>, path: string): WarmupSetting {
  if (typeof warmup === 'boolean') return warmup
  if (warmup.inputs !== undefined) return { inputs: warmup.inputs, source: path }
  const file = warmup.inputs_file as string
  const dir = dirname(path)
  const inputsFile = resolve(dir, file)
  const inside = relative(dir, inputsFile)
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) {
    throw new ConfigError(`MODEL_REPOSITORY: ${path}: warmup.inputs_file ${JSON.stringify(file)} must name a file inside the model's directory`)
  }
  return { inputsFile }
}
