import { Ajv, type ErrorObject } from 'ajv'
import { ERROR_MESSAGE_KEYWORD, refusalMessage } from '../schema.js'
import { EXECUTION_PROVIDERS, type ExecutionProvider } from './providers.js'

/** A model's `config.json` as the schema below takes it (README, "Model repository"). */
export interface ModelConfigFile {
  readonly max_batch_size?: number
  readonly dynamic_batching?: boolean | {
    readonly max_queue_delay_microseconds?: number
    readonly preferred_batch_size?: readonly number[]
  }
  readonly max_queue_size?: number
  readonly instance_count?: number
  readonly intra_op_threads?: number
  readonly execution_providers?: readonly ExecutionProvider[]
  readonly cuda_device_id?: number
  readonly warmup?: boolean | { readonly inputs?: readonly unknown[], readonly inputs_file?: string }
}

const WARMUP_USAGE = 'warmup must be true, false, {"inputs": [v2 tensors]} or {"inputs_file": "<file beside config.json>"}'
const PREFERRED = 'dynamic_batching.preferred_batch_size must be an array of positive integers'
const PROVIDERS = 'execution_providers must be a non-empty array of "cuda" and "cpu"'

/** The bounds match the environment variables' (MAX_BATCH_SIZE, MODEL_INSTANCES...), whose defaults these fields override. */
function int (key: string, min: number, max: number): object {
  return { type: 'integer', minimum: min, maximum: max, [ERROR_MESSAGE_KEYWORD]: `${key} must be an integer from ${min} to ${max}` }
}

/**
 * The schema of `config.json`, each field with the message its refusal names. What a
 * schema cannot say stays in parseModelConfig: the defaults, the sorting of
 * preferred_batch_size, and that warmup.inputs_file stays inside the model's directory.
 * Its v2 tensors (warmup.inputs) are checked against the model's signature when it loads.
 */
export const MODEL_CONFIG_SCHEMA = {
  type: 'object',
  errorMessage: 'must be a JSON object',
  additionalProperties: false,
  properties: {
    max_batch_size: int('max_batch_size', 0, 65_536),
    dynamic_batching: {
      type: ['boolean', 'object'],
      errorMessage: 'dynamic_batching must be true, false or an object',
      additionalProperties: false,
      properties: {
        max_queue_delay_microseconds: {
          type: 'integer',
          minimum: 0,
          maximum: 10_000_000,
          errorMessage: 'dynamic_batching.max_queue_delay_microseconds must be an integer from 0 to 10000000'
        },
        preferred_batch_size: { type: 'array', items: { type: 'integer', minimum: 1, errorMessage: PREFERRED }, errorMessage: PREFERRED }
      }
    },
    max_queue_size: int('max_queue_size', 1, 1_000_000),
    instance_count: int('instance_count', 1, 256),
    intra_op_threads: int('intra_op_threads', 0, 1024),
    execution_providers: {
      type: 'array',
      minItems: 1,
      items: { type: 'string', enum: [...EXECUTION_PROVIDERS], errorMessage: PROVIDERS },
      errorMessage: PROVIDERS
    },
    cuda_device_id: int('cuda_device_id', 0, 1023),
    warmup: {
      type: ['boolean', 'object'],
      errorMessage: WARMUP_USAGE,
      additionalProperties: false,
      properties: {
        inputs: { type: 'array', errorMessage: 'warmup.inputs must be an array of v2 tensors' },
        inputs_file: { type: 'string', minLength: 1, errorMessage: 'warmup.inputs_file must be the name of a JSON file beside config.json' }
      },
      // As an object: inputs or inputs_file, not both.
      if: { type: 'object' },
      then: { oneOf: [{ type: 'object', required: ['inputs'] }, { type: 'object', required: ['inputs_file'] }], errorMessage: WARMUP_USAGE }
    }
  }
} as const

const validate = new Ajv({ allErrors: false, verbose: true, allowUnionTypes: true, keywords: [ERROR_MESSAGE_KEYWORD] })
  .compile<ModelConfigFile>(MODEL_CONFIG_SCHEMA)

/**
 * A parsed config.json as the schema takes it, or what is wrong with it in words that
 * name the field (the clause after "MODEL_REPOSITORY: <path>: ").
 */
export function checkModelConfig (raw: unknown): { file: ModelConfigFile } | { problem: string } {
  if (validate(raw)) return { file: raw }
  return { problem: refusalOf((validate.errors ?? []).at(-1)) }
}

/** The last error decides: a combinator's own error (warmup's oneOf) follows its branches'. */
function refusalOf (error: ErrorObject | undefined): string {
  if (error === undefined) return 'is not valid'
  if (error.keyword === 'additionalProperties') {
    const field = [...error.instancePath.split('/').slice(1), error.params.additionalProperty as string].join('.')
    return `unknown setting "${field}"`
  }
  return refusalMessage(error) ?? `${error.instancePath.slice(1).replaceAll('/', '.')} ${error.message ?? 'is not valid'}`
}
