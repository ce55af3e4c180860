import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { checkBatch, tabularBatch } from '../../scripts/lib/batch-check.js'
import { finalizeBatch } from '../../src/batch/finalize-batch.js'
import { lineRanges } from '../../src/batch/input-file.js'
import { newBatchId, newFileId, outputFileId, storageNames } from '../../src/batch/objects.js'
import { answeredLine, encodePart } from '../../src/batch/output-lines.js'
import { RedisBatchStore } from '../../src/batch/redis/redis-batch-store.js'
import { DirectoryStorage } from '../../src/batch/storage/directory.js'
import type { BatchStorage } from '../../src/batch/storage/storage.js'
import type { ShardRange, Task } from '../../src/batch/store.js'
import { startRedis } from '../helpers/fleet.js'
import type { Cleanup } from '../helpers/app.js'
import { redisJournal } from '../helpers/redis-journal.js'

// Commits are fenced by their claim's epoch, and finalization reads committed parts only:
// a finalizer that dies mid-assembly is re-run by a peer to the same bytes.

const redis = await startRedis(after)
const log = pino({ level: 'silent' })
const LINES = 20
const SHARD = 5

async function instance (t: Cleanup, ns: string, name: string): Promise<RedisBatchStore> {
  const { connection } = await redisJournal(t, redis.url, { namespace: ns, instanceId: name })
  return new RedisBatchStore(connection, { namespace: ns, retentionMs: 600_000 })
}

async function only (store: RedisBatchStore, kind: Task['kind'], idleMs = 60_000): Promise<Task[]> {
  const tasks = await store.readTasks(100, idleMs)
  return tasks.filter((task) => task.kind === kind)
}

test('a stale epoch cannot commit, and a finalizer killed mid-assembly is re-run by a peer to identical bytes', async (t) => {
  const ns = `fin-${randomUUID().slice(0, 8)}`
  const dir = await mkdtemp(join(tmpdir(), 'spotgate-finalize-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const storage = new DirectoryStorage(dir)
  const [a, b] = [await instance(t, ns, 'a'), await instance(t, ns, 'b')]

  const { jsonl, expected } = tabularBatch(LINES)
  const fileId = newFileId()
  await storage.put(storageNames.file(fileId), Buffer.from(jsonl))
  const batchId = newBatchId()
  const now = Math.floor(Date.now() / 1000)
  await a.createBatch({ id: batchId, endpoint: '/v2/models/tabular/infer', input_file_id: fileId, completion_window: '24h', created_at: String(now), expires_at: String(now + 3600), metadata: '', status: 'validating' })
  const [validation] = await only(a, 'validate')
  const claim = await a.claim(validation, 3)
  assert.equal(claim.kind, 'validate')
  const ranges = lineRanges(Buffer.from(jsonl))
  const shards: ShardRange[] = []
  for (let first = 0; first < LINES; first += SHARD) shards.push({ start: ranges[first][0], end: first + SHARD < LINES ? ranges[first + SHARD][0] : Buffer.byteLength(jsonl), firstLine: first, count: SHARD })
  assert.equal(await a.startBatch(validation, claim.kind === 'validate' ? claim.epoch : 0, { model: 'tabular', version: '1', total: LINES, shards }, now), true)

  const commitLines = async (store: RedisBatchStore, task: Task, epoch: number, lines: number[], sequence: number) => {
    const records = lines.map((index) => ({ index, ok: true, text: answeredLine(batchId, index, expected[index].customId, 200, Buffer.from(`{"outputs":[{"data":[${expected[index].score ?? 0}]}]}`)) }))
    const part = storageNames.part(batchId, task.shard, epoch, sequence)
    await storage.put(part, encodePart(records))
    return store.commit(task, epoch, part, records.map(({ index, ok }) => ({ index, ok })))
  }
  const shardTasks = await only(a, 'shard')
  assert.equal(shardTasks.length, LINES / SHARD)
  for (const task of shardTasks.slice(0, 3)) {
    const shardClaim = await a.claim(task, 3)
    assert.equal(shardClaim.kind, 'shard')
    if (shardClaim.kind !== 'shard') return
    const lines = Array.from({ length: SHARD }, (_, i) => task.shard * SHARD + i)
    assert.deepEqual(await commitLines(a, task, shardClaim.epoch, lines, 1), { kind: 'ok', won: SHARD, shardComplete: true })
  }
  // The last shard: two lines committed by a, then b takes the shard over (a went silent)
  // and a's next commit, with its old epoch, is refused.
  const last = shardTasks[3]
  const aClaim = await a.claim(last, 3)
  if (aClaim.kind !== 'shard') throw new Error(aClaim.kind)
  assert.deepEqual(await commitLines(a, last, aClaim.epoch, [15, 16], 1), { kind: 'ok', won: 2, shardComplete: false })
  await sleep(300)
  const [stolen] = await only(b, 'shard', 200)
  assert.equal(stolen.entryId, last.entryId)
  const bClaim = await b.claim(stolen, 3)
  if (bClaim.kind !== 'shard') throw new Error(bClaim.kind)
  assert.equal(bClaim.takenOver, true)
  assert.deepEqual(bClaim.done, [true, true, false, false, false], 'the taker runs only the lines not yet committed')
  assert.deepEqual(await commitLines(a, last, aClaim.epoch, [17], 2), { kind: 'stale' })
  assert.equal(await a.renew(last, aClaim.epoch), false, 'the woken holder cannot renew the claim back either')
  assert.deepEqual(await commitLines(b, stolen, bClaim.epoch, [15, 17], 1), { kind: 'ok', won: 1, shardComplete: false }, 'first write wins for line 15')

  // Cancelled before the last two lines ran: they end in the error file as batch_cancelled.
  const cancel = await a.transition(batchId, { from: ['in_progress'], to: 'cancelling', fields: { ending: 'cancelled' }, finalize: true })
  assert.deepEqual(cancel, { applied: true, status: 'cancelling' })
  const [final] = await only(a, 'final')
  const finalClaim = await a.claim(final, 3)
  assert.equal(finalClaim.kind, 'final')
  // Sealed: nothing is committed any more, whoever holds the shard.
  assert.deepEqual(await commitLines(b, stolen, bClaim.epoch, [18], 2), { kind: 'sealed' })

  // a dies between writing the output file and the error file.
  const crashing: BatchStorage = {
    ...storage,
    kind: storage.kind,
    get: (name) => storage.get(name),
    read: (name) => storage.read(name),
    getRange: (name, start, end) => storage.getRange(name, start, end),
    list: (prefix) => storage.list(prefix),
    delete: (name) => storage.delete(name),
    close: () => storage.close(),
    put: async (name, data) => {
      if (name === storageNames.file(outputFileId(batchId, 'error'))) throw new Error('killed mid-assembly')
      await storage.put(name, data)
    }
  }
  await assert.rejects(finalizeBatch({ store: a, storage: crashing, log }, final), /killed mid-assembly/)
  const outputName = storageNames.file(outputFileId(batchId, 'output'))
  const firstOutput = await storage.get(outputName)
  assert.ok(firstOutput !== undefined)
  assert.equal((await a.getBatch(batchId))?.status, 'cancelling', 'no status change from the dead finalizer')

  // b takes the finalization over once a's claim is idle, and finishes it.
  await sleep(300)
  const [again] = await only(b, 'final', 200)
  assert.equal(again.entryId, final.entryId)
  assert.equal((await b.claim(again, 3)).kind, 'final')
  assert.equal(await finalizeBatch({ store: b, storage, log }, again), 'cancelled')
  const record = await b.getBatch(batchId)
  assert.equal(record?.status, 'cancelled')
  assert.equal(record?.output_file_id, outputFileId(batchId, 'output'))
  const output = await storage.get(outputName) as Buffer
  const errors = await storage.get(storageNames.file(outputFileId(batchId, 'error'))) as Buffer
  assert.ok(output.equals(firstOutput), 'the re-run wrote the same output bytes')
  assert.deepEqual(await storage.list(storageNames.partsFolder(batchId)), [], 'parts are removed once the batch is final')

  const check = checkBatch(expected, output.toString(), errors.toString())
  assert.deepEqual({ lost: check.lost, duplicated: check.duplicated, wrong: check.wrong }, { lost: [], duplicated: [], wrong: [] })
  assert.equal(check.answered, 18)
  assert.deepEqual(check.errors.map((line) => [line.custom_id, line.error?.code, line.response]), [[expected[18].customId, 'batch_cancelled', null], [expected[19].customId, 'batch_cancelled', null]])
  assert.deepEqual([record?.completed, record?.failed], ['18', '2'])
})
