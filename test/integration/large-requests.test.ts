import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { namespace, startFleet, startRedis } from '../helpers/fleet.js'
import { makeRepository } from '../helpers/model-repo.js'
import { classifierBody } from '../helpers/requests.js'

// Requests near MAX_BODY_BYTES are journaled whole (a peer replays them from Redis). While
// one travels to Redis, the journal's health probe must not be stuck behind it: a probe
// that waits past its timeout would fail readiness and turn small requests away with 503.

const redis = await startRedis(after)
const repo = await makeRepository(['reduce_sum', 'classifier'])
after(repo.cleanup)

/** A binary reduce_sum request of `floats` FP32 values, summed over every axis. */
function largeRequest (floats: number): { body: Buffer, headers: Record<string, string> } {
  const header = Buffer.from(JSON.stringify({
    inputs: [
      { name: 'data', datatype: 'FP32', shape: [1, 1, floats], parameters: { binary_data_size: floats * 4 } },
      { name: 'axes', datatype: 'INT64', shape: [0], data: [] }
    ]
  }))
  const data = Buffer.alloc(floats * 4)
  new Float32Array(data.buffer, data.byteOffset, floats).fill(1)
  return {
    body: Buffer.concat([header, data]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) }
  }
}

test('requests of nearly MAX_BODY_BYTES keep readiness and small requests unaffected while they are journaled', async (t) => {
  // 8 MiB rather than the default 16: redis-server itself needs time to store a record, and
  // on a starved CPU 16 MiB can keep it from answering the probe within its 500 ms.
  const maxBodyBytes = 8 * 1024 * 1024
  const [gateway] = await startFleet(t, 1, { redis, namespace: namespace(), modelRepository: repo.dir, leaseTtlMs: 3000, env: { MAX_BODY_BYTES: String(maxBodyBytes) } })
  // The header and the empty axes fit in the 4 KiB left below MAX_BODY_BYTES.
  const floats = (maxBodyBytes - 4096) / 4
  const { body, headers } = largeRequest(floats)

  let running = true
  const readiness: number[] = []
  const small: number[] = []
  const probe = (async () => {
    while (running) {
      readiness.push((await gateway.fetch('/health/ready')).status)
      await sleep(20)
    }
  })()
  const traffic = (async () => {
    while (running) {
      small.push((await gateway.post('/v2/models/classifier/infer', classifierBody(1))).status)
      await sleep(10)
    }
  })()

  for (let i = 0; i < 4; i++) {
    const response = await gateway.fetch('/v2/models/reduce_sum/infer', { method: 'POST', body, headers, signal: AbortSignal.timeout(60_000) })
    const text = await response.text()
    assert.equal(response.status, 200, text.slice(0, 300))
    const sum = (JSON.parse(text) as { outputs: Array<{ data: number[] }> }).outputs[0].data[0]
    assert.equal(sum, floats, 'the model saw every value')
  }
  running = false
  await Promise.all([probe, traffic])

  const unready = readiness.filter((status) => status !== 200).length
  const refused = small.filter((status) => status !== 200).length
  t.diagnostic(`${readiness.length} readiness probes, ${small.length} small requests during four ${(body.length / 1024 / 1024).toFixed(1)} MB requests`)
  assert.ok(readiness.length > 0 && small.length > 0)
  assert.equal(unready, 0, `readiness failed ${unready} times\n${gateway.tail(10)}`)
  assert.equal(refused, 0, `small requests refused ${refused} times: ${[...new Set(small)].join(', ')}\n${gateway.tail(10)}`)
})
