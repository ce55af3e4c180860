import { readdir, readFile, access, constants } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError } from '../config-error.js'
import { isExecutionProvider, type ExecutionProvider } from './providers.js'

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
  readonly warmup: boolean
}

export interface ModelVersionEntry {
  readonly name: string
  readonly version: string
  readonly path: string
  readonly config: ModelConfig
}

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
const VERSION = /^[1-9][0-9]{0,8}$/

type Defaults = ModelConfig

/**
 * Lists every `<model>/<version>/model.onnx` under `root`. Anything malformed is a
 * ConfigError naming the file, so a bad deploy stops at start-up rather than at the
 * first request.
 */
export async function scanModelRepository (root: string, defaults: Defaults): Promise<ModelVersionEntry[]> {
  let names: string[]
  try {
    await access(root, constants.R_OK | constants.X_OK)
    names = (await readdir(root, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort()
  } catch (error) {
    throw new ConfigError(`MODEL_REPOSITORY: cannot read ${root}: ${(error as Error).message}`)
  }
  const entries: ModelVersionEntry[] = []
  for (const name of names) {
    if (!MODEL_NAME.test(name)) continue
    const dir = join(root, name)
    const config = await readModelConfig(join(dir, 'config.json'), defaults)
    const versions = (await readdir(dir, { withFileTypes: true }))
      .filter((d) => d.isDirectory() && VERSION.test(d.name))
      .map((d) => d.name)
      .sort((a, b) => Number(a) - Number(b))
    for (const version of versions) {
      const path = join(dir, version, 'model.onnx')
      try {
        await access(path, constants.R_OK)
      } catch {
        throw new ConfigError(`MODEL_REPOSITORY: ${path} is missing or unreadable`)
      }
      entries.push({ name, version, path, config })
    }
  }
  if (entries.length === 0) throw new ConfigError(`MODEL_REPOSITORY: no models found in ${root} (expected <model>/<version>/model.onnx)`)
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

export function parseModelConfig (raw: unknown, defaults: Defaults, path = 'config.json'): ModelConfig {
  const fail = (what: string): never => { throw new ConfigError(`MODEL_REPOSITORY: ${path}: ${what}`) }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('must be a JSON object')
  const obj = raw as Record<string, unknown>
  const known = new Set(['max_batch_size', 'dynamic_batching', 'max_queue_size', 'instance_count', 'intra_op_threads', 'execution_providers', 'cuda_device_id', 'warmup'])
  for (const key of Object.keys(obj)) if (!known.has(key)) fail(`unknown setting "${key}"`)

  const int = (key: string, min: number, fallback: number): number => {
    const value = obj[key]
    if (value === undefined) return fallback
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min) fail(`${key} must be an integer ≥ ${min}`)
    return value as number
  }

  let dynamicBatching = defaults.dynamicBatching
  let maxQueueDelayMicros = defaults.maxQueueDelayMicros
  let preferredBatchSizes = defaults.preferredBatchSizes
  const batching = obj.dynamic_batching
  if (batching === false) dynamicBatching = false
  else if (batching !== undefined && batching !== true) {
    if (typeof batching !== 'object' || batching === null || Array.isArray(batching)) fail('dynamic_batching must be true, false or an object')
    const b = batching as Record<string, unknown>
    for (const key of Object.keys(b)) {
      if (key !== 'max_queue_delay_microseconds' && key !== 'preferred_batch_size') fail(`unknown setting "dynamic_batching.${key}"`)
    }
    if (b.max_queue_delay_microseconds !== undefined) {
      const delay = b.max_queue_delay_microseconds
      if (typeof delay !== 'number' || !Number.isInteger(delay) || delay < 0 || delay > 10_000_000) fail('dynamic_batching.max_queue_delay_microseconds must be an integer from 0 to 10000000')
      maxQueueDelayMicros = delay as number
    }
    if (b.preferred_batch_size !== undefined) {
      const sizes = b.preferred_batch_size
      if (!Array.isArray(sizes) || !sizes.every((s) => Number.isInteger(s) && s > 0)) fail('dynamic_batching.preferred_batch_size must be an array of positive integers')
      preferredBatchSizes = [...(sizes as number[])].sort((a, b) => a - b)
    }
  }

  let executionProviders = defaults.executionProviders
  if (obj.execution_providers !== undefined) {
    const list = obj.execution_providers
    if (!Array.isArray(list) || list.length === 0 || !list.every((p) => typeof p === 'string' && isExecutionProvider(p))) {
      fail('execution_providers must be a non-empty array of "cuda" and "cpu"')
    }
    executionProviders = list as ExecutionProvider[]
  }
  if (obj.warmup !== undefined && typeof obj.warmup !== 'boolean') fail('warmup must be true or false')

  return {
    maxBatchSize: int('max_batch_size', 0, defaults.maxBatchSize),
    dynamicBatching,
    maxQueueDelayMicros,
    preferredBatchSizes,
    maxQueueSize: int('max_queue_size', 1, defaults.maxQueueSize),
    instanceCount: int('instance_count', 1, defaults.instanceCount),
    intraOpThreads: int('intra_op_threads', 0, defaults.intraOpThreads),
    executionProviders,
    cudaDeviceId: int('cuda_device_id', 0, defaults.cudaDeviceId),
    warmup: (obj.warmup as boolean | undefined) ?? defaults.warmup
  }
}
