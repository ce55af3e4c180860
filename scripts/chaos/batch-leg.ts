import { checkBatch, repeatedBatch, type ExpectedLine } from '../lib/batch-check.js'
import { pause } from './util.js'
import { SPIN_MS_PER_1000_ITERATIONS } from '../models/catalog.js'
import { spinBody, type SpinVariant } from './workload.js'

// The chaos run's batch leg: one batch of spin lines through the Files and Batches API,
// submitted when the load starts, running (behind the online load, in the capacity it
// leaves) through the kills and drains, then checked line by line: every input line
// exactly once across the output and error files, every answer the reference run's.

export interface BatchLegReport {
  readonly lines: number
  readonly batchId: string
  /** The batch's final status, or its last seen one when it did not finish in time. */
  readonly status: string
  readonly requestCounts: { total: number, completed: number, failed: number }
  /** From submission to the terminal status. */
  readonly finishedMs?: number
  readonly lost: number
  readonly duplicated: number
  readonly wrong: number
  /** Lines in the error file (none expected: no line fails and nothing is cancelled). */
  readonly errorLines: number
  readonly samples: string[]
}

export interface SubmittedBatch {
  readonly batchId: string
  readonly expected: readonly ExpectedLine[]
  readonly submittedAt: number
}

const TIMEOUT_MS = 10_000

/**
 * The batch's lines: short spin runs (about 10 ms on the reference machine), so the batch
 * spans the load and its kills without taking much of a small machine's CPU from it.
 */
export const BATCH_VARIANT: SpinVariant = { key: '10ms/x=0.25', iterations: Math.round(10 / SPIN_MS_PER_1000_ITERATIONS * 1000), x: 0.25 }

/** Takes the right output of the batch's line from one online run, then uploads `lines` of them to `url` and creates a batch. */
export async function submitBatchLeg (url: string, lines: number, seed: number): Promise<SubmittedBatch> {
  const body = spinBody(BATCH_VARIANT, `chaos-${seed}-batch`)
  const reference = await fetch(`${url}/v2/models/spin/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(TIMEOUT_MS) })
  if (reference.status !== 200) throw new Error(`batch leg: the reference run answered ${reference.status}: ${await reference.text()}`)
  const output = (await reference.json() as { outputs: Array<{ data: number[] }> }).outputs[0].data
  const { jsonl, expected } = repeatedBatch(lines, '/v2/models/spin/infer', body, output, `chaos-${seed}`)
  const form = new FormData()
  form.append('purpose', 'batch')
  form.append('file', new Blob([jsonl]), 'chaos.jsonl')
  const uploaded = await fetch(`${url}/v1/files`, { method: 'POST', body: form, signal: AbortSignal.timeout(TIMEOUT_MS) })
  if (uploaded.status !== 200) throw new Error(`batch leg: upload answered ${uploaded.status}: ${await uploaded.text()}`)
  const file = await uploaded.json() as { id: string }
  const created = await fetch(`${url}/v1/batches`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input_file_id: file.id, endpoint: '/v2/models/spin/infer', completion_window: '24h' }),
    signal: AbortSignal.timeout(TIMEOUT_MS)
  })
  if (created.status !== 200) throw new Error(`batch leg: create answered ${created.status}: ${await created.text()}`)
  return { batchId: (await created.json() as { id: string }).id, expected, submittedAt: Date.now() }
}

interface BatchView {
  status: string
  output_file_id: string | null
  error_file_id: string | null
  request_counts: { total: number, completed: number, failed: number }
}

/** Polls the batch on whichever instances are up until it is terminal or `deadline` passes, then checks its files. */
export async function finishBatchLeg (submitted: SubmittedBatch, urls: () => string[], deadline: () => number, signal: AbortSignal): Promise<BatchLegReport> {
  let last: BatchView | undefined
  let finishedAt: number | undefined
  let turn = 0
  const get = async (path: string): Promise<Response | undefined> => {
    const candidates = urls()
    if (candidates.length === 0) return undefined
    try {
      return await fetch(`${candidates[turn++ % candidates.length]}${path}`, { signal: AbortSignal.any([signal, AbortSignal.timeout(TIMEOUT_MS)]) })
    } catch {
      return undefined
    }
  }
  while (Date.now() < deadline() && !signal.aborted) {
    const response = await get(`/v1/batches/${submitted.batchId}`)
    if (response?.status === 200) {
      last = await response.json() as BatchView
      if (['completed', 'failed', 'expired', 'cancelled'].includes(last.status)) {
        finishedAt = Date.now()
        break
      }
    }
    await pause(250, signal)
  }
  const content = async (id: string | null): Promise<string> => {
    if (id === null) return ''
    for (let attempt = 0; attempt < 20 && !signal.aborted; attempt++) {
      const response = await get(`/v1/files/${id}/content`)
      if (response?.status === 200) return response.text()
      await pause(250, signal)
    }
    throw new Error(`batch leg: could not read file ${id}`)
  }
  const base = { lines: submitted.expected.length, batchId: submitted.batchId, status: last?.status ?? 'unknown', requestCounts: last?.request_counts ?? { total: 0, completed: 0, failed: 0 } }
  if (finishedAt === undefined || last === undefined) {
    return { ...base, lost: submitted.expected.length, duplicated: 0, wrong: 0, errorLines: 0, samples: [`the batch did not finish in time (last status ${base.status})`] }
  }
  const check = checkBatch(submitted.expected, await content(last.output_file_id), await content(last.error_file_id))
  return {
    ...base,
    finishedMs: finishedAt - submitted.submittedAt,
    lost: check.lost.length,
    duplicated: check.duplicated.length,
    wrong: check.wrong.length + check.unknown.length,
    errorLines: check.errors.length,
    samples: [...check.lost.slice(0, 3).map((id) => `lost ${id}`), ...check.duplicated.slice(0, 3).map((id) => `duplicated ${id}`), ...check.wrong.slice(0, 3).map((id) => `wrong ${id}`)]
  }
}

/** The leg passed: finished, every line exactly once, every answer right, none in the error file. */
export function batchLegPassed (report: BatchLegReport): boolean {
  return report.status === 'completed' && report.lost === 0 && report.duplicated === 0 && report.wrong === 0 && report.errorLines === 0 &&
    report.requestCounts.completed === report.lines && report.requestCounts.failed === 0
}
