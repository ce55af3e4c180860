import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { after, test } from 'node:test'
import { openaiFor, submitBatch, waitForBatch } from '../helpers/batches.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository } from '../helpers/model-repo.js'
import { spinBody, spinIterations } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'

// Online requests come first (docs/batches.md): a batch running on the same model
// instance delays an online request by at most the one batch run in progress, never by
// the batch lines queued behind it.

const repo = await makeRepository(['spin'])
after(repo.cleanup)
const storage = await mkdtemp(join(tmpdir(), 'spotgate-batch-priority-'))
after(() => rm(storage, { recursive: true, force: true }))

const LINE_MS = 40
const ONLINE_MS = 5
const SAMPLES = 30

function quantile (values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

async function onlineLatencies (gateway: GatewayProcess): Promise<number[]> {
  const body = spinBody(spinIterations(ONLINE_MS))
  const latencies: number[] = []
  for (let i = 0; i < SAMPLES; i++) {
    const started = performance.now()
    const response = await gateway.post('/v2/models/spin/infer', body)
    assert.equal(response.status, 200)
    await response.arrayBuffer()
    latencies.push(performance.now() - started)
  }
  return latencies
}

test('online latency while a batch keeps the only model instance busy: at most one batch run added, never the batch queue', async (t) => {
  const gateway = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: repo.dir, BATCH_STORAGE_URL: `file://${storage}`, BATCH_CONCURRENCY: '32', BATCH_SHARD_LINES: '50' } })
  await gateway.waitReady(30_000)
  const idle = await onlineLatencies(gateway)

  const client = openaiFor(gateway)
  const line = JSON.stringify({ method: 'POST', url: '/v2/models/spin/infer', body: spinBody(spinIterations(LINE_MS)) })
  const jsonl = Array.from({ length: 400 }, (_, i) => `{"custom_id":"p-${i}",${line.slice(1)}`).join('\n') + '\n'
  const batch = await submitBatch(client, jsonl, '/v2/models/spin/infer')
  await waitForBatch([client], batch.id, allow(20_000), (b) => (b.request_counts?.completed ?? 0) >= 1)
  const busy = await onlineLatencies(gateway)
  const during = await client.batches.retrieve(batch.id)
  assert.equal(during.status, 'in_progress', 'the batch was still running while the online requests were measured')
  await client.batches.cancel(batch.id)

  const figures = `idle p50 ${quantile(idle, 0.5).toFixed(1)} ms p99 ${quantile(idle, 0.99).toFixed(1)} ms; with a batch p50 ${quantile(busy, 0.5).toFixed(1)} ms p99 ${quantile(busy, 0.99).toFixed(1)} ms (batch lines ${LINE_MS} ms, ${SAMPLES} sequential requests of ${ONLINE_MS} ms)`
  t.diagnostic(figures)
  // The lane bounds the wait by the one line running: the typical online request pays
  // at most about one line's run more than when idle. A single sample may also meet a
  // hiccup of a busy machine, but FIFO behind the 32 queued lines (BATCH_CONCURRENCY)
  // would cost every request over a second, so even the slowest stays far below that.
  const typicalBound = quantile(idle, 0.9) + allow(2 * LINE_MS + 60)
  assert.ok(quantile(busy, 0.9) <= typicalBound, `90th percentile ${quantile(busy, 0.9).toFixed(1)} ms, bound ${typicalBound.toFixed(1)} ms; ${figures}`)
  const queueCost = allow(32 * LINE_MS)
  assert.ok(Math.max(...busy) < quantile(idle, 0.99) + queueCost / 2, `slowest online request ${Math.max(...busy).toFixed(1)} ms, half the queue's ${queueCost.toFixed(0)} ms; ${figures}`)
})
