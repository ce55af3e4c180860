import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { createStorage } from '../../src/batch/storage/create-storage.js'
import type { BatchStorage } from '../../src/batch/storage/storage.js'
import { S3RVER_ENV, startS3 } from '../helpers/s3-server.js'

// The batch storage contract, on both backends: a directory and a real S3 HTTP API (s3rver).

const s3 = await startS3(after)
Object.assign(process.env, S3RVER_ENV)
const dir = await mkdtemp(join(tmpdir(), 'spotgate-storage-'))
after(() => rm(dir, { recursive: true, force: true }))

const backends: Record<string, () => Promise<BatchStorage>> = {
  directory: () => createStorage(`file://${dir}`),
  S3: () => createStorage(`s3://${s3.bucket}/contract/test`, s3.endpoint)
}

for (const [name, make] of Object.entries(backends)) {
  describe(`${name} storage`, () => {
    test('put, get, range reads, list and delete', async () => {
      const storage = await make()
      const data = Buffer.from('line one\nline two\nline three\n')
      await storage.put('files/file-a', data)
      assert.deepEqual(await storage.get('files/file-a'), data)
      assert.equal((await storage.getRange('files/file-a', 9, 18)).toString(), 'line two\n')
      assert.equal(await storage.get('files/missing'), undefined)
      await storage.put('batches/b1/parts/0.1.1', Buffer.from('x'))
      await storage.put('batches/b1/parts/0.2.1', Buffer.from('y'))
      await storage.put('files/file-a', Buffer.from('replaced'))
      assert.equal((await storage.get('files/file-a'))?.toString(), 'replaced', 'a put replaces the object whole')
      assert.deepEqual(await storage.list('batches/b1/parts/'), ['batches/b1/parts/0.1.1', 'batches/b1/parts/0.2.1'])
      await storage.delete('batches/b1/parts/0.1.1')
      await storage.delete('batches/b1/parts/never-there')
      assert.deepEqual(await storage.list('batches/b1/parts/'), ['batches/b1/parts/0.2.1'])
      await storage.close()
    })

    test('read streams an object whole with its size, without holding it in one buffer', async () => {
      const storage = await make()
      const data = randomBytes(3 * 1024 * 1024 + 17)
      await storage.put('files/big', data)
      const object = await storage.read('files/big')
      assert.ok(object !== undefined)
      assert.equal(object.size, data.length)
      const chunks: Buffer[] = []
      for await (const chunk of object.body) chunks.push(chunk as Buffer)
      assert.ok(chunks.length > 1, 'the body arrives in several chunks')
      assert.ok(Buffer.concat(chunks).equals(data))
      assert.equal(await storage.read('files/never-there'), undefined)
      await storage.close()
    })

    test('names that could leave the storage root are refused before any I/O', async () => {
      const storage = await make()
      for (const bad of ['../etc/passwd', 'files/../../x', '/abs', 'files/a b', 'files//x', './x', 'files/x\u0000']) {
        await assert.rejects(storage.get(bad), /invalid storage object name/, bad)
        await assert.rejects(storage.read(bad), /invalid storage object name/, bad)
        await assert.rejects(storage.put(bad, Buffer.from('x')), /invalid storage object name/, bad)
      }
      await storage.close()
    })
  })
}

test('the directory backend reads an object opened before it was replaced or deleted whole', async () => {
  const storage = await createStorage(`file://${dir}/opened`)
  const first = Buffer.alloc(256 * 1024, 1)
  await storage.put('files/f', first)
  const object = await storage.read('files/f')
  assert.ok(object !== undefined)
  await storage.put('files/f', Buffer.alloc(10, 2))
  await storage.delete('files/f')
  const chunks: Buffer[] = []
  for await (const chunk of object.body) chunks.push(chunk as Buffer)
  assert.ok(Buffer.concat(chunks).equals(first))
})

test('a storage directory that is a file, or lies under one, is a configuration error at start-up', async () => {
  const file = join(dir, 'plain-file')
  await writeFile(file, 'not a directory')
  await assert.rejects(createStorage(`file://${file}`), { name: 'ConfigError', message: new RegExp(`^BATCH_STORAGE_URL: ${file} is not a directory`) })
  await assert.rejects(createStorage(`file://${file}/batches`), { name: 'ConfigError', message: /is not a directory \(so .*\/batches cannot be made\)/ })
  // A directory that does not exist yet is made at the first upload.
  await (await createStorage(`file://${dir}/not-yet/deeper`)).close()
})

test('the directory backend leaves no temporary file behind a put', async () => {
  const storage = await createStorage(`file://${dir}/tmpcheck`)
  await Promise.all(Array.from({ length: 20 }, (_, i) => storage.put(`files/f${i}`, Buffer.alloc(1000, i))))
  assert.deepEqual((await readdir(join(dir, 'tmpcheck', 'files'))).filter((f) => f.startsWith('.tmp-')), [])
})
