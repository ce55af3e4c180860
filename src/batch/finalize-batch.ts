import type { Logger } from 'pino'
import { lineRanges } from './input-file.js'
import { fileObject, fileRecord, nowSeconds, outputFileId, storageNames, type Ending } from './objects.js'
import { decodePart, unrunLine } from './output-lines.js'
import type { BatchStorage } from './storage/storage.js'
import type { BatchStore, Task } from './store.js'

export interface FinalizeDeps {
  readonly store: BatchStore
  readonly storage: BatchStorage
  readonly log: Logger
}

const FINAL_STATUS: Record<Ending, string> = { completed: 'completed', cancelled: 'cancelled', expired: 'expired' }

const UNRUN: Record<Ending, { code: string, message: string }> = {
  cancelled: { code: 'batch_cancelled', message: 'the batch was cancelled before this line ran' },
  expired: { code: 'batch_expired', message: 'the batch expired (completion_window) before this line ran' },
  completed: { code: 'attempts_exhausted', message: 'this line\'s shard was claimed BATCH_MAX_ATTEMPTS times without finishing' }
}

export interface AssembledFiles {
  readonly output: Buffer
  readonly errors: Buffer
  readonly completed: number
  readonly failed: number
}

/**
 * Builds the output and error files from committed parts only, in input order: every
 * line exactly once, its committed result or, for a line that never ran, an error with
 * `response: null`. Reads only sealed state, so running it again gives the same bytes.
 */
export async function assembleFiles (deps: FinalizeDeps, batchId: string): Promise<AssembledFiles & { ending: Ending }> {
  const { store, storage } = deps
  const snapshot = await store.finalSnapshot(batchId)
  const { record } = snapshot
  const ending = (record.ending !== undefined && record.ending !== '' ? record.ending : 'completed') as Ending
  const total = Number(record.total ?? 0)
  const results = new Map<number, { ok: boolean, text: string }>()
  for (const [part, lines] of [...snapshot.parts].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const data = await storage.get(part)
    if (data === undefined) throw new Error(`committed part ${part} is missing from storage`)
    const wanted = new Set(lines)
    for (const entry of decodePart(data)) if (wanted.has(entry.index)) results.set(entry.index, entry)
    for (const line of lines) if (!results.has(line)) throw new Error(`committed part ${part} lacks line ${line}`)
  }
  // Lines that never ran need their custom_id: read from the input only when there are some.
  let customIds: string[] = []
  if (results.size < total) {
    const input = await storage.get(storageNames.file(record.input_file_id))
    if (input === undefined) throw new Error(`input file ${record.input_file_id} is missing from storage`)
    customIds = lineRanges(input).map(([start, end]) => {
      try {
        return String((JSON.parse(input.toString('utf8', start, end)) as { custom_id?: unknown }).custom_id ?? '')
      } catch {
        return ''
      }
    })
  }
  const output: string[] = []
  const errors: string[] = []
  for (let line = 0; line < total; line++) {
    const result = results.get(line)
    if (result === undefined) errors.push(unrunLine(batchId, line, customIds[line] ?? '', UNRUN[ending].code, UNRUN[ending].message))
    else (result.ok ? output : errors).push(result.text)
  }
  const join = (lines: string[]): Buffer => Buffer.from(lines.length === 0 ? '' : `${lines.join('\n')}\n`)
  return { output: join(output), errors: join(errors), completed: output.length, failed: errors.length, ending }
}

/**
 * A claimed finalization: assemble, write both files under ids derived from the batch's
 * (a re-run after a crash rewrites the same bytes under the same names), then move the
 * batch to its final status. The parts are removed once the status is final.
 */
export async function finalizeBatch (deps: FinalizeDeps, task: Task): Promise<string | undefined> {
  const { store, storage, log } = deps
  const batchId = task.batchId
  const files = await assembleFiles(deps, batchId)
  const now = nowSeconds()
  const fileIds: Record<'output_file_id' | 'error_file_id', string> = { output_file_id: '', error_file_id: '' }
  for (const [which, data] of [['output', files.output], ['error', files.errors]] as const) {
    if (data.length === 0) continue
    const id = outputFileId(batchId, which)
    await storage.put(storageNames.file(id), data)
    await store.putFile(fileObject(fileRecord({ id, object: 'file', bytes: data.length, created_at: now, filename: `${batchId}_${which}.jsonl`, purpose: 'batch_output' })))
    fileIds[`${which}_file_id`] = id
  }
  const status = FINAL_STATUS[files.ending]
  const { applied, status: current } = await store.transition(batchId, {
    from: ['in_progress', 'finalizing', 'cancelling'],
    to: status,
    fields: { ...fileIds, completed: String(files.completed), failed: String(files.failed), [`${status}_at`]: String(now) },
    done: task
  })
  if (!applied) {
    await store.release(task)
    return current
  }
  log.info({ batchId, status, completed: files.completed, failed: files.failed }, `batch ${status}`)
  await removeParts(storage, batchId).catch((error: Error) => log.warn({ batchId, err: error }, 'could not remove the batch\'s parts'))
  return status
}

async function removeParts (storage: BatchStorage, batchId: string): Promise<void> {
  for (const name of await storage.list(storageNames.partsFolder(batchId))) await storage.delete(name)
}
