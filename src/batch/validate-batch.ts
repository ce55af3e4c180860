import type { BatchSettings } from '../config.js'
import type { ModelRegistry, ServedModel } from '../inference/model-registry.js'
import { parseEndpoint, validateInput } from './input-file.js'
import { nowSeconds, storageNames, type BatchError } from './objects.js'
import type { BatchStorage } from './storage/storage.js'
import type { BatchStore, Task } from './store.js'

export interface ValidationDeps {
  readonly store: BatchStore
  readonly storage: BatchStorage
  readonly models: ModelRegistry
  readonly settings: BatchSettings
}

export type ValidationOutcome = 'started' | 'failed' | 'superseded'

/**
 * validating → in_progress (the model version pinned, the shards queued) or → failed with
 * `errors.data[]`; nothing runs from a bad file. Fenced by the claim's epoch, so a
 * validator that lost its claim changes nothing.
 */
export async function validateBatch (deps: ValidationDeps, task: Task, epoch: number): Promise<ValidationOutcome> {
  const { store, storage, models, settings } = deps
  const record = await store.getBatch(task.batchId)
  if (record === undefined || record.status !== 'validating') {
    await store.release(task)
    return 'superseded'
  }
  const fail = async (errors: BatchError[]): Promise<ValidationOutcome> => {
    const { applied } = await store.transition(task.batchId, {
      from: ['validating'],
      to: 'failed',
      fields: { errors: JSON.stringify(errors), failed_at: String(nowSeconds()) },
      fence: { field: 'validate', epoch },
      done: task
    })
    return applied ? 'failed' : 'superseded'
  }
  const target = parseEndpoint(record.endpoint)
  let model: ServedModel
  try {
    if (target === undefined) throw new Error(`endpoint ${record.endpoint} is not /v2/models/{model}[/versions/{version}]/infer`)
    model = models.resolve(target.model, target.version)
  } catch (error) {
    return fail([{ code: 'model_not_found', line: null, message: (error as Error).message, param: 'endpoint' }])
  }
  const data = await storage.get(storageNames.file(record.input_file_id))
  if (data === undefined) return fail([{ code: 'file_not_found', line: null, message: `input file ${record.input_file_id} has no content (deleted?)`, param: 'input_file_id' }])
  const validated = await validateInput(data, record.endpoint, model, settings)
  if (validated.errors.length > 0) return fail(validated.errors)
  const started = await store.startBatch(task, epoch, { model: model.name, version: model.version, total: validated.total, shards: validated.shards }, nowSeconds())
  return started ? 'started' : 'superseded'
}
