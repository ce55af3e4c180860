// A batch job running beside the measured online load (docs/batches.md: online
// requests come first): its lines use the same model instances in the batch lane, so the
// online figures of a run with it, next to the same run without, show what it costs them,
// and its own progress shows the capacity the online load left.

const TIMEOUT_MS = 30_000

export interface BesideBatch {
  readonly id: string
  /** Lines committed so far. */
  completed: () => Promise<number>
}

/** Uploads `lines` copies of the JSON request `body` for `model`, creates the batch and waits until it runs. */
export async function startBesideBatch (url: string, model: string, body: Buffer, lines: number): Promise<BesideBatch> {
  const line = body.toString('utf8')
  const endpoint = `/v2/models/${model}/infer`
  const jsonl = Array.from({ length: lines }, (_, i) => `{"custom_id":"b${i}","method":"POST","url":"${endpoint}","body":${line}}`).join('\n') + '\n'
  const form = new FormData()
  form.append('purpose', 'batch')
  form.append('file', new Blob([jsonl]), 'bench.jsonl')
  const uploaded = await fetch(`${url}/v1/files`, { method: 'POST', body: form, signal: AbortSignal.timeout(TIMEOUT_MS) })
  if (uploaded.status !== 200) throw new Error(`bench batch: upload answered ${uploaded.status}: ${await uploaded.text()}`)
  const fileId = (await uploaded.json() as { id: string }).id
  const created = await fetch(`${url}/v1/batches`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input_file_id: fileId, endpoint, completion_window: '24h' }),
    signal: AbortSignal.timeout(TIMEOUT_MS)
  })
  if (created.status !== 200) throw new Error(`bench batch: create answered ${created.status}: ${await created.text()}`)
  const id = (await created.json() as { id: string }).id
  const read = async (): Promise<{ status: string, request_counts: { completed: number } }> =>
    await (await fetch(`${url}/v1/batches/${id}`, { signal: AbortSignal.timeout(TIMEOUT_MS) })).json() as { status: string, request_counts: { completed: number } }
  // Validation (one pass over the file) happens before the measured load, not inside it.
  const deadline = Date.now() + TIMEOUT_MS
  let status = 'validating'
  while (status === 'validating' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    status = (await read()).status
  }
  if (status !== 'in_progress') throw new Error(`bench batch: ${status} instead of in_progress`)
  return { id, completed: async () => (await read()).request_counts.completed }
}
