import { Readable } from 'node:stream'
import multipart from '@fastify/multipart'
import type { FastifyInstance } from 'fastify'
import type { BatchSettings } from '../../config.js'
import { Conflict, InvalidRequest, ObjectNotFound, PayloadTooLarge } from '../../errors.js'
import { countLines } from '../../batch/input-file.js'
import { isFileId, newFileId, nowSeconds, storageNames, type FileObject } from '../../batch/objects.js'
import type { BatchStorage } from '../../batch/storage/storage.js'
import type { BatchStore } from '../../batch/store.js'
import { listPage, storeCall } from './list-page.js'
import { fileListSchema, MAX_FILE_PAGE } from '../schemas.js'

export interface FileRouteDeps {
  readonly store: BatchStore
  readonly storage: BatchStorage
  readonly settings: BatchSettings
}

const MAX_FILENAME = 255

/** `/v1/files`: OpenAI's Files API for batch input (upload, get, content, delete, list). */
export async function fileRoutes (app: FastifyInstance, deps: FileRouteDeps): Promise<void> {
  const { store, storage, settings } = deps
  await app.register(multipart, {
    limits: { fileSize: settings.maxFileBytes, files: 1, fields: 4, parts: 6, fieldSize: 1024, headerPairs: 50 },
    throwFileSizeLimit: true
  })

  const found = async (id: string): Promise<FileObject> => {
    const file = isFileId(id) ? await storeCall(() => store.getFile(id)) : undefined
    if (file === undefined) throw new ObjectNotFound(`no file '${id.slice(0, 100)}'`)
    return file
  }

  app.post('/v1/files', async (request, reply) => {
    if (!request.isMultipart()) throw new InvalidRequest('send multipart/form-data with the fields purpose=batch and file (JSONL)')
    let purpose: string | undefined
    let data: Buffer | undefined
    let filename = ''
    try {
      for await (const part of request.parts()) {
        if (part.type === 'file') {
          if (part.fieldname !== 'file') throw new InvalidRequest(`unexpected file field '${part.fieldname.slice(0, 50)}'; the JSONL goes in 'file'`)
          data = await part.toBuffer()
          filename = part.filename.slice(0, MAX_FILENAME)
        } else if (part.fieldname === 'purpose') {
          purpose = String(part.value)
        }
      }
    } catch (error) {
      const code = (error as { code?: string }).code
      if (code === 'FST_REQ_FILE_TOO_LARGE') throw new PayloadTooLarge(`file exceeds ${settings.maxFileBytes} bytes (MAX_BATCH_FILE_BYTES)`)
      if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') throw new InvalidRequest('multipart body has too many parts: send purpose and one file')
      if ((error as { statusCode?: number }).statusCode === 400 && code?.startsWith('SPOTGATE_') === true) throw error
      throw new InvalidRequest(`malformed multipart body: ${(error as Error).message}`)
    }
    if (purpose !== 'batch') throw new InvalidRequest(`purpose must be 'batch'${purpose === undefined ? '' : `, not ${JSON.stringify(purpose.slice(0, 50))}`}`)
    if (data === undefined) throw new InvalidRequest('the multipart body has no file field')
    if (data.length === 0) throw new InvalidRequest('the file is empty')
    const lines = countLines(data)
    if (lines > settings.maxLines) throw new InvalidRequest(`the file has ${lines} lines; at most ${settings.maxLines} (MAX_BATCH_LINES)`)
    const file: FileObject = { id: newFileId(), object: 'file', bytes: data.length, created_at: nowSeconds(), filename, purpose: 'batch' }
    await storage.put(storageNames.file(file.id), data)
    try {
      await storeCall(() => store.putFile(file))
    } catch (error) {
      // The client gets 503 and no id: nothing may keep what it will upload again (Redis
      // may have stored the record although its answer did not arrive in time).
      await storeCall(() => store.deleteFile(file.id)).catch(() => {})
      await storage.delete(storageNames.file(file.id)).catch(() => {})
      throw error
    }
    return reply.code(200).send(file)
  })

  app.get<{ Querystring: { purpose?: string, order?: 'asc' | 'desc', after?: string, limit?: string } }>('/v1/files', { schema: fileListSchema }, async (request) => {
    const { purpose, order } = request.query
    let files = await storeCall(() => store.listFiles())
    if (purpose !== undefined) files = files.filter((f) => f.purpose === purpose)
    if (order === 'asc') files.reverse()
    return listPage(files, request.query, MAX_FILE_PAGE)
  })

  app.get<{ Params: { id: string } }>('/v1/files/:id', async (request) => found(request.params.id))

  app.get<{ Params: { id: string } }>('/v1/files/:id/content', async (request, reply) => {
    const file = await found(request.params.id)
    const content = await storage.read(storageNames.file(file.id))
    if (content === undefined) throw new ObjectNotFound(`file '${file.id}' has no content`)
    reply.type('application/octet-stream').header('content-length', content.size)
    if (request.method === 'HEAD') {
      // Fastify's HEAD route drains a stream it is given: an empty one keeps the length without reading the object.
      content.body.destroy()
      return reply.send(Readable.from([]))
    }
    return reply.send(content.body)
  })

  app.delete<{ Params: { id: string } }>('/v1/files/:id', async (request) => {
    const file = await found(request.params.id)
    // A running batch reads its input until its files are assembled (the unrun lines' custom_ids too).
    const users = await storeCall(async () => {
      const records = await Promise.all((await store.activeBatches()).map((id) => store.getBatch(id)))
      return records.filter((record) => record?.input_file_id === file.id).map((record) => record?.id)
    })
    if (users.length > 0) throw new Conflict(`file '${file.id}' is the input of ${users.join(', ')}, not finished yet; cancel it or wait`)
    await storeCall(() => store.deleteFile(file.id))
    await storage.delete(storageNames.file(file.id))
    return { id: file.id, object: 'file', deleted: true }
  })
}
