import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Cluster, Redis } from 'ioredis'
import { RedisCluster } from './redis-cluster.js'
import { RedisSentinelGroup, SENTINEL_MASTER } from './redis-sentinel.js'
import { RedisServer } from './redis-server.js'

// The journal's Redis for the chaos harness and the failover tests, in any of the three
// ways operators run it, with what a run needs from it: the gateway's environment, a
// client to read the journal back, and a primary to kill and bring back.

export const REDIS_MODES = ['single', 'cluster', 'sentinel'] as const
export type RedisMode = (typeof REDIS_MODES)[number]

export interface RedisDeployment {
  readonly mode: RedisMode
  /** The gateway's REDIS_* variables. */
  readonly env: Readonly<Record<string, string>>
  /** Journal partitions a gateway on it should use. */
  readonly partitions: number
  readonly description: string
  /** A client for the caller's reads (a Cluster client on a cluster); the caller disconnects it. */
  client: () => Redis | Cluster
  /**
   * SIGKILLs a primary (on a cluster, the first one found) and says which. With
   * `linkLossMs`, its replicas' links are cut that long before: what it acknowledges
   * meanwhile never reaches them, as when a primary's host loses its network and then dies.
   */
  killPrimary: (linkLossMs?: number) => Promise<RedisServer>
  /** Starts a killed server again with its data directory: it rejoins as a replica of the promoted one. */
  restart: (server: RedisServer) => Promise<void>
  /** Every shard has a primary and every live server is a synced replica; rejects after `timeoutMs`. */
  waitHealthy: (timeoutMs: number) => Promise<void>
  killNow: () => void
  stop: () => Promise<void>
}

/** `appendfsync everysec`: what operators run; a failover, not a crash of every node, is the risk tested. */
const SERVER_ARGS = ['--appendfsync', 'everysec']

export async function startRedisDeployment (mode: RedisMode): Promise<RedisDeployment> {
  switch (mode) {
    case 'single': {
      const server = await RedisServer.start(SERVER_ARGS)
      return {
        mode,
        env: { REDIS_URL: server.url },
        partitions: 1,
        description: `redis-server on 127.0.0.1:${server.port}`,
        client: () => server.client(),
        killPrimary: async () => { await server.kill(); return server },
        restart: (s) => s.restart(),
        waitHealthy: async () => {},
        killNow: () => server.killNow(),
        stop: () => server.stop()
      }
    }
    case 'cluster': {
      const cluster = await RedisCluster.start(3)
      return {
        mode,
        env: { REDIS_CLUSTER_NODES: cluster.seedList },
        partitions: 16,
        description: `Redis Cluster of 3 primaries and 3 replicas on ${cluster.seedList},…`,
        client: () => {
          const client = new Cluster(cluster.target.mode === 'cluster' ? cluster.target.nodes.map(({ host, port }) => ({ host, port })) : [], { enableAutoPipelining: true, redisOptions: { maxRetriesPerRequest: 1 } })
          client.on('error', () => {})
          return client
        },
        killPrimary: async (linkLossMs = 0) => {
          const [victim] = await cluster.primaries()
          if (victim === undefined) throw new Error('no primary to kill')
          await cutReplicaLinks(victim, linkLossMs)
          await victim.kill()
          return victim
        },
        restart: (s) => s.restart(),
        waitHealthy: (timeoutMs) => cluster.waitHealthy(timeoutMs),
        killNow: () => { for (const node of cluster.nodes) node.killNow() },
        stop: () => cluster.stop()
      }
    }
    case 'sentinel': {
      const group = await RedisSentinelGroup.start(2)
      return {
        mode,
        env: { REDIS_SENTINELS: group.sentinelList, REDIS_SENTINEL_MASTER: SENTINEL_MASTER },
        partitions: 1,
        description: `a primary, 2 replicas and 3 Sentinels (master '${SENTINEL_MASTER}' via ${group.sentinelList})`,
        client: () => {
          const client = new Redis({ sentinels: group.target.mode === 'sentinel' ? [...group.target.sentinels] : [], name: SENTINEL_MASTER, maxRetriesPerRequest: 1 })
          client.on('error', () => {})
          return client
        },
        killPrimary: async (linkLossMs = 0) => {
          const victim = await group.primary()
          if (victim === undefined) throw new Error('no primary to kill')
          await cutReplicaLinks(victim, linkLossMs)
          await victim.kill()
          return victim
        },
        restart: (s) => s.restart(),
        waitHealthy: async (timeoutMs) => { await group.waitHealthy(timeoutMs) },
        killNow: () => { for (const s of [...group.servers, ...group.sentinels]) s.killNow() },
        stop: () => group.stop()
      }
    }
  }
}

/**
 * Drops `primary`'s replica connections and waits `ms`: writes it takes meanwhile are
 * acknowledged but not replicated. A password set first keeps the replicas from
 * reconnecting (connections already open, the gateways', stay authenticated), as a
 * network partition between them would.
 */
async function cutReplicaLinks (primary: RedisServer, ms: number): Promise<void> {
  if (ms <= 0) return
  const admin = primary.client()
  try {
    await admin.config('SET', 'requirepass', randomUUID())
    await admin.call('CLIENT', 'KILL', 'TYPE', 'replica')
  } finally {
    admin.disconnect()
  }
  await sleep(ms)
}
