import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { closeClient, openClient, type RedisClient } from '../../src/journal/redis/clients.js'
import { RedisServer } from '../helpers/redis-server.js'

// ioredis ends a client for good when a connect attempt is cut short (its Sentinel
// failover detector does this when +switch-master arrives mid-reconnect). The journal's
// clients start again by themselves; only closeClient closes one for good.

let redis: RedisServer
before(async () => { redis = await RedisServer.start() })
after(async () => { await redis?.stop() })

async function waitStatus (client: RedisClient, status: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (client.status !== status) {
    if (Date.now() > deadline) return false
    await sleep(20)
  }
  return true
}

test('a client ended by anything but closeClient connects again and answers', async (t) => {
  const client = openClient({ mode: 'single', url: redis.url }, { commandTimeoutMs: 1000, connectionName: 'test-restart', autoPipelining: false })
  t.after(() => closeClient(client, false))
  assert.ok(await waitStatus(client, 'ready', 5000), `connected (status ${client.status})`)
  client.disconnect()
  assert.ok(await waitStatus(client, 'end', 2000), `ended (status ${client.status})`)
  assert.ok(await waitStatus(client, 'ready', 5000), `connected again after it ended (status ${client.status})`)
  assert.equal(await client.ping(), 'PONG')
})

test('a client closed with closeClient stays closed', async () => {
  const client = openClient({ mode: 'single', url: redis.url }, { commandTimeoutMs: 1000, connectionName: 'test-close', autoPipelining: false })
  assert.ok(await waitStatus(client, 'ready', 5000))
  await closeClient(client, true)
  await sleep(1500)
  assert.equal(client.status, 'end')
})
