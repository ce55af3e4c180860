import { Redis } from 'ioredis'
import type { RedisTarget } from '../../src/journal/redis/target.js'
import { waitUntil } from './process.js'
import { infoFields, onlineReplicas, replicaInSync } from './redis-cluster.js'
import { RedisServer } from './redis-server.js'

export const SENTINEL_MASTER = 'journal'

/**
 * A primary with replicas watched by three Sentinels, all real redis-server processes on
 * loopback. Sentinels agree (quorum 2) that a primary is down after `downAfterMs` and
 * promote a replica.
 */
export class RedisSentinelGroup {
  private constructor (readonly servers: RedisServer[], readonly sentinels: RedisServer[]) {}

  static async start (replicas = 2, downAfterMs = 1000): Promise<RedisSentinelGroup> {
    const primary = await RedisServer.start(['--repl-diskless-sync-delay', '0'])
    const servers = [primary, ...await Promise.all(Array.from({ length: replicas }, () =>
      RedisServer.start(['--replicaof', '127.0.0.1', String(primary.port), '--repl-diskless-sync-delay', '0'])))]
    const group = new RedisSentinelGroup(servers, [])
    try {
      if (!await waitUntil(async () => (await Promise.all(servers.slice(1).map((s) => replicaInSync(s.port)))).every(Boolean) && await onlineReplicas(primary.port) === replicas, 20_000, 100)) {
        throw new Error('Sentinel group: replicas did not sync with the primary')
      }
      group.sentinels.push(...await Promise.all([0, 1, 2].map(() => RedisServer.startSentinel([
        `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${primary.port} 2`,
        `sentinel down-after-milliseconds ${SENTINEL_MASTER} ${downAfterMs}`,
        `sentinel failover-timeout ${SENTINEL_MASTER} 5000`,
        `sentinel parallel-syncs ${SENTINEL_MASTER} ${replicas}`
      ]))))
      // Sentinels find the replicas and each other through the primary (hello messages every 2 s).
      if (!await waitUntil(async () => (await Promise.all(group.sentinels.map((s) => group.sentinelSees(s.port, replicas)))).every(Boolean), 20_000, 200)) {
        throw new Error('Sentinels did not discover the replicas and each other')
      }
    } catch (error) {
      await group.stop()
      throw error
    }
    return group
  }

  /** Whether the Sentinel on `port` knows `replicas` replicas and the two other Sentinels. */
  private async sentinelSees (port: number, replicas: number): Promise<boolean> {
    const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 1000 })
    client.on('error', () => {})
    try {
      await client.connect()
      const [known, peers] = await Promise.all([
        client.call('SENTINEL', 'REPLICAS', SENTINEL_MASTER) as Promise<unknown[]>,
        client.call('SENTINEL', 'SENTINELS', SENTINEL_MASTER) as Promise<unknown[]>
      ])
      return known.length >= replicas && peers.length >= 2
    } catch {
      return false
    } finally {
      client.disconnect()
    }
  }

  get target (): RedisTarget {
    return { mode: 'sentinel', sentinels: this.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), master: SENTINEL_MASTER, auth: { tls: false } }
  }

  /** `REDIS_SENTINELS` for a gateway. */
  get sentinelList (): string {
    return this.sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')
  }

  /** The server that is the primary now. */
  async primary (): Promise<RedisServer | undefined> {
    const roles = await Promise.all(this.servers.map(async (s) => (await infoFields(s.port, 'info-replication').catch(() => ({} as Record<string, string>))).role))
    return this.servers.find((_, index) => roles[index] === 'master')
  }

  /** Waits until a live server is primary with every other live server a synced replica of it. */
  async waitHealthy (timeoutMs: number, expectedReplicas = this.servers.length - 1): Promise<RedisServer> {
    let found: RedisServer | undefined
    const healthy = await waitUntil(async () => {
      found = await this.primary()
      if (found === undefined) return false
      const inSync = await Promise.all(this.servers.filter((s) => s !== found).map((s) => replicaInSync(s.port)))
      return inSync.filter(Boolean).length >= expectedReplicas && await onlineReplicas(found.port) >= expectedReplicas
    }, timeoutMs, 100)
    if (!healthy || found === undefined) throw new Error(`Sentinel group not healthy within ${timeoutMs} ms`)
    return found
  }

  async stop (): Promise<void> {
    await Promise.all([...this.sentinels, ...this.servers].map((s) => s.stop()))
  }
}
