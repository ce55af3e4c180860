import type { FastifyInstance } from 'fastify'
import { Conflict, InvalidRequest, ObjectNotFound } from '../../errors.js'
import { parseEndpoint } from '../../batch/input-file.js'
import { batchObject, isBatchId, isFileId, newBatchId, nowSeconds, type BatchRecord } from '../../batch/objects.js'
import type { BatchStore } from '../../batch/store.js'
import { page, pageSize, storeCall } from './list-page.js'
import { batchListSchema } from '../schemas.js'
import { isJsonObject } from '../../json.js'

export interface BatchRouteDeps {
  readonly store: BatchStore
  /** Tells this instance's batch worker that there is work (it also polls). */
  readonly poke: () => void
}

/** Longest completion_window accepted: a week. OpenAI takes only "24h"; shorter or longer windows are spotgate's extension. */
const MAX_WINDOW_S = 7 * 24 * 3600
const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600 }

function windowSeconds (value: unknown): number {
  const match = typeof value === 'string' ? /^([1-9][0-9]{0,6})([smh])$/.exec(value) : null
  const seconds = match === null ? NaN : Number(match[1]) * UNITS[match[2]]
  if (!(seconds <= MAX_WINDOW_S)) throw new InvalidRequest('completion_window must be a duration such as "24h" (s, m or h; at most 168h)')
  return seconds
}

function metadataOf (value: unknown): string {
  if (value === undefined || value === null) return ''
  if (typeof value !== 'object' || Array.isArray(value)) throw new InvalidRequest('metadata must be an object of strings')
  const entries = Object.entries(value as Record<string, unknown>)
  if (entries.length > 16) throw new InvalidRequest('metadata holds at most 16 keys')
  for (const [key, item] of entries) {
    if (key.length > 64 || typeof item !== 'string' || item.length > 512) throw new InvalidRequest('metadata keys are at most 64 characters and values strings of at most 512')
  }
  return JSON.stringify(value)
}

/** `/v1/batches`: OpenAI's Batches API (create, get, list, cancel) over the batch store. */
export async function batchRoutes (app: FastifyInstance, deps: BatchRouteDeps): Promise<void> {
  const { store } = deps

  const found = async (id: string): Promise<BatchRecord> => {
    const record = isBatchId(id) ? await storeCall(() => store.getBatch(id)) : undefined
    if (record === undefined) throw new ObjectNotFound(`no batch '${id.slice(0, 100)}'`)
    return record
  }

  app.post('/v1/batches', async (request) => {
    const body: unknown = request.body
    if (!isJsonObject(body)) throw new InvalidRequest('request body must be a JSON object with input_file_id, endpoint and completion_window')
    const { input_file_id: fileId, endpoint } = body
    if (typeof fileId !== 'string' || !isFileId(fileId)) throw new InvalidRequest('input_file_id must be the id of an uploaded file (file-…)')
    if (typeof endpoint !== 'string' || parseEndpoint(endpoint) === undefined) throw new InvalidRequest('endpoint must be /v2/models/{model}[/versions/{version}]/infer')
    const window = windowSeconds(body.completion_window)
    const metadata = metadataOf(body.metadata)
    const file = await storeCall(() => store.getFile(fileId))
    if (file === undefined) throw new ObjectNotFound(`no file '${fileId}'`)
    if (file.purpose !== 'batch') throw new InvalidRequest(`file '${fileId}' has purpose '${file.purpose}'; a batch reads files uploaded with purpose 'batch'`)
    const now = nowSeconds()
    const record: BatchRecord = {
      id: newBatchId(),
      endpoint,
      input_file_id: fileId,
      completion_window: body.completion_window as string,
      created_at: String(now),
      expires_at: String(now + window),
      metadata,
      status: 'validating'
    }
    await storeCall(() => store.createBatch(record))
    deps.poke()
    return batchObject(record)
  })

  app.get<{ Params: { id: string } }>('/v1/batches/:id', async (request) => batchObject(await found(request.params.id)))

  app.get<{ Querystring: { after?: string, limit?: string } }>('/v1/batches', { schema: batchListSchema }, async (request) => {
    const { after } = request.query
    const limit = pageSize(request.query.limit, 20)
    const { records, hasMore } = await storeCall(() => store.listBatches(after, limit))
    return page(records.map(batchObject), hasMore)
  })

  app.post<{ Params: { id: string } }>('/v1/batches/:id/cancel', { config: { emptyBodyAllowed: true } }, async (request) => {
    const record = await found(request.params.id)
    const now = String(nowSeconds())
    const { applied, status } = await storeCall(() => store.transition(record.id, {
      from: ['validating', 'in_progress'],
      to: 'cancelling',
      fields: { cancelling_at: now, ending: 'cancelled' },
      finalize: true
    }))
    if (!applied && status !== 'cancelling' && status !== 'cancelled') throw new Conflict(`batch '${record.id}' is ${status ?? 'gone'}; only a validating or in-progress batch can be cancelled`)
    deps.poke()
    return batchObject(await found(record.id))
  })
}
