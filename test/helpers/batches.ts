import { setTimeout as sleep } from 'node:timers/promises'
import OpenAI, { toFile } from 'openai'
import type { Batch } from 'openai/resources/batches'
import { checkBatch, type BatchCheck, type ExpectedLine } from '../../scripts/lib/batch-check.js'
import type { GatewayProcess } from './gateway-process.js'

export { tabularBatch, type ExpectedLine } from '../../scripts/lib/batch-check.js'

// The Files and Batches API driven as users drive it: the official openai client with baseURL.

/** An openai client for `gateway` (spotgate's /v1), without the client's own retries. */
export function openaiFor (gateway: GatewayProcess, apiKey = 'unused'): OpenAI {
  return new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey, maxRetries: 0, timeout: 10_000 })
}

export const TERMINAL = ['completed', 'failed', 'expired', 'cancelled']

/** Uploads `jsonl` and creates a batch over it. */
export async function submitBatch (client: OpenAI, jsonl: string, endpoint = '/v2/models/tabular/infer', completionWindow = '24h'): Promise<Batch> {
  const file = await client.files.create({ file: await toFile(Buffer.from(jsonl), 'input.jsonl'), purpose: 'batch' })
  return client.batches.create({ input_file_id: file.id, endpoint: endpoint as never, completion_window: completionWindow as never })
}

/**
 * Polls the batch (round-robin over `clients`, skipping ones that fail: an instance may
 * be dead or paused) until `done` holds or `timeoutMs` passes.
 */
export async function waitForBatch (clients: readonly OpenAI[], id: string, timeoutMs: number, done: (batch: Batch) => boolean = (b) => TERMINAL.includes(b.status)): Promise<Batch> {
  const deadline = Date.now() + timeoutMs
  let last: Batch | undefined
  let turn = 0
  while (Date.now() < deadline) {
    try {
      last = await clients[turn++ % clients.length].batches.retrieve(id, { timeout: 2000 })
      if (done(last)) return last
    } catch {}
    await sleep(100)
  }
  throw new Error(`batch ${id} not done within ${timeoutMs} ms (last: ${JSON.stringify(last)})`)
}

export async function fileText (client: OpenAI, id: string | null): Promise<string> {
  if (id === null) return ''
  return (await client.files.content(id)).text()
}

/** The finished batch's files, checked line by line against what was sent. */
export async function checkedBatch (client: OpenAI, batch: Batch, expected: readonly ExpectedLine[]): Promise<BatchCheck & { output: string, errorText: string }> {
  const output = await fileText(client, batch.output_file_id ?? null)
  const errorText = await fileText(client, batch.error_file_id ?? null)
  return { ...checkBatch(expected, output, errorText), output, errorText }
}
