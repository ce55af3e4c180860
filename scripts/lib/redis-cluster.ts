import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import calculateSlot from 'cluster-key-slot'
import { Redis } from 'ioredis'
import type { RedisTarget } from '../../src/journal/redis/target.js'
import { stablePort, waitUntil } from './process.js'
import { RedisServer } from './redis-server.js'

const run = promisify(execFile)

/** Replicas sync at once instead of after 5 s (`repl-diskless-sync-delay`), so a failover can be tested sooner. */
const FAST_SYNC = ['--repl-diskless-sync-delay', '0']

/** Fields of `INFO replication` or `CLUSTER INFO` (`key:value` lines). */
export async function infoFields (port: number, command: 'info-replication' | 'cluster-info'): Promise<Record<string, string>> {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 1000 })
  client.on('error', () => {})
  try {
    await client.connect()
    const text = command === 'info-replication' ? await client.info('replication') : await client.cluster('INFO') as string
    return Object.fromEntries(text.split(/\r?\n/).filter((line) => line.includes(':')).map((line) => {
      const at = line.indexOf(':')
      return [line.slice(0, at), line.slice(at + 1)]
    }))
  } finally {
    client.disconnect()
  }
}

/** A key the node on `port` holds: any key on a standalone server, one of its slots on a cluster node. */
async function probeKeyOn (client: Redis, port: number): Promise<string> {
  const base = 'spotgate-test:replication-probe'
  const info = await client.info('cluster')
  if (!/cluster_enabled:1/.test(info)) return base
  const ranges = (await client.cluster('SLOTS')).filter((range) => range[2]?.[1] === port).map(([from, to]) => [from, to] as const)
  for (let n = 0; n < 100_000; n++) {
    const key = `${base}:${n}`
    const slot = calculateSlot(key)
    if (ranges.some(([from, to]) => slot >= from && slot <= to)) return key
  }
  throw new Error(`no probe key found for the slots of 127.0.0.1:${port}`)
}

/** Whether the node on `port` is a replica whose link to its primary is up (its data is in sync). */
export async function replicaInSync (port: number): Promise<boolean> {
  const fields = await infoFields(port, 'info-replication').catch(() => ({} as Record<string, string>))
  return fields.role === 'slave' && fields.master_link_status === 'up'
}

/**
 * Replicas that acknowledge a write to the primary on `port` within 100 ms (`WAIT`).
 * After a full sync a replica says its link is up, and its primary lists it online,
 * before the primary streams it writes: a diskless sync starts the stream on the
 * replica's first ACK, which it sends once a second. Until then `WAIT` does not count it.
 */
export async function onlineReplicas (port: number): Promise<number> {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 2000 })
  client.on('error', () => {})
  try {
    await client.connect()
    const [[, ,], [, acknowledged]] = await client.pipeline().incr(await probeKeyOn(client, port)).wait(16, 100).exec() as [[null, number], [null, number]]
    return acknowledged
  } catch {
    return 0
  } finally {
    client.disconnect()
  }
}

/**
 * A Redis Cluster of real redis-server processes on loopback: `primaries` shards of one
 * primary and one replica each, created with `redis-cli --cluster create`, every replica
 * synced before `start` returns (only a synced replica can be promoted).
 */
export class RedisCluster {
  private constructor (readonly nodes: RedisServer[]) {}

  static async start (primaries = 3, nodeTimeoutMs = 2000, extraArgs: readonly string[] = []): Promise<RedisCluster> {
    // The cluster bus gets a port of its own too (by default the data port + 10000, which could be taken).
    const nodes = await Promise.all(Array.from({ length: primaries * 2 }, async () => RedisServer.start([
      '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', String(nodeTimeoutMs),
      '--cluster-port', String(await stablePort()), ...FAST_SYNC, ...extraArgs
    ])))
    const cluster = new RedisCluster(nodes)
    try {
      await run('redis-cli', ['--cluster', 'create', ...nodes.map((node) => `127.0.0.1:${node.port}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 30_000 })
      await cluster.waitHealthy(30_000)
    } catch (error) {
      await cluster.stop()
      throw error
    }
    return cluster
  }

  get target (): RedisTarget {
    return { mode: 'cluster', nodes: this.nodes.slice(0, 3).map((node) => ({ host: '127.0.0.1', port: node.port })), auth: { tls: false } }
  }

  /** `REDIS_CLUSTER_NODES` for a gateway. */
  get seedList (): string {
    return this.nodes.slice(0, 3).map((node) => `127.0.0.1:${node.port}`).join(',')
  }

  /** Every node answers with cluster_state:ok, each shard has one primary and one synced replica. */
  async waitHealthy (timeoutMs: number): Promise<void> {
    const healthy = await waitUntil(async () => {
      const roles = await Promise.all(this.nodes.map(async (node) => {
        const [cluster, replication] = await Promise.all([infoFields(node.port, 'cluster-info'), infoFields(node.port, 'info-replication')]).catch(() => [{}, {}] as Array<Record<string, string>>)
        return { ok: cluster.cluster_state === 'ok', role: replication.role, linkUp: replication.master_link_status === 'up' }
      }))
      const replicas = roles.filter((node) => node.role === 'slave')
      if (!roles.every((node) => node.ok) || replicas.length !== this.nodes.length / 2 || !replicas.every((node) => node.linkUp)) return false
      const primaries = this.nodes.filter((_, index) => roles[index].role === 'master')
      return (await Promise.all(primaries.map((node) => onlineReplicas(node.port)))).every((online) => online >= 1)
    }, timeoutMs, 100)
    if (!healthy) throw new Error(`Redis Cluster on ${this.seedList} not healthy within ${timeoutMs} ms`)
  }

  /** The nodes that are primaries now (they change with a failover). */
  async primaries (): Promise<RedisServer[]> {
    const roles = await Promise.all(this.nodes.map(async (node) => (await infoFields(node.port, 'info-replication').catch(() => ({} as Record<string, string>))).role))
    return this.nodes.filter((_, index) => roles[index] === 'master')
  }

  /** The primary serving `key`'s slot. */
  async primaryFor (key: string): Promise<RedisServer> {
    const live = (await this.primaries())[0]
    if (live === undefined) throw new Error('no node of the cluster answers')
    const client = new Redis(live.port, '127.0.0.1', { maxRetriesPerRequest: 0 })
    client.on('error', () => {})
    try {
      const slot = await client.cluster('KEYSLOT', key) as number
      const shards = await client.cluster('SLOTS')
      const shard = shards.find(([from, to]) => slot >= from && slot <= to)
      const port = shard?.[2]?.[1]
      const node = this.nodes.find((n) => n.port === port)
      if (node === undefined) throw new Error(`no primary serves slot ${slot}`)
      return node
    } finally {
      client.disconnect()
    }
  }

  /** The replicas of `primary` (from its INFO replication). */
  async replicasOf (primary: RedisServer): Promise<RedisServer[]> {
    const fields = await infoFields(primary.port, 'info-replication')
    const ports = Object.entries(fields).filter(([key]) => /^slave\d+$/.test(key)).map(([, value]) => Number(/port=(\d+)/.exec(value)?.[1]))
    return this.nodes.filter((node) => ports.includes(node.port))
  }

  async stop (): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()))
  }
}
