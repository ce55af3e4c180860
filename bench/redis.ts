import { RedisCluster } from '../scripts/lib/redis-cluster.js'
import { RedisServer } from '../scripts/lib/redis-server.js'

/** How the bench runs Redis (the launcher's AOF, fsync once a second): durable short of fsync per write. */
const EXTRA_ARGS = ['--appendfsync', 'everysec'] as const
export const REDIS_SETTINGS = ['--save', '', '--appendonly', 'yes', ...EXTRA_ARGS] as const

/** The journal's Redis for one run: its gateway settings, the processes whose CPU is its cost. */
export interface BenchJournal {
  readonly env: Record<string, string>
  readonly pids: readonly number[]
  /** The replicas among them (a cluster's), whose CPU is replication's share. */
  readonly replicaPids: readonly number[]
  /** Zeroes redis-server's per-command statistics (one node only; a cluster's are not read). */
  resetCommandStats: () => Promise<void>
  /** Microseconds redis-server spent executing each command since the reset (INFO commandstats). */
  commandStats: () => Promise<Record<string, number>>
  stop: () => Promise<void>
}

/** `cmdstat_set:calls=17756,usec=44914,…` lines into {set: 44914}. */
export function parseCommandStats (info: string): Record<string, number> {
  const usec: Record<string, number> = {}
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=\d+,usec=(\d+)/gm)) usec[match[1]] = Number(match[2])
  return usec
}

/**
 * A Redis of the bench's own on free loopback ports: one redis-server, or a Redis
 * Cluster of three primaries with a replica each (16 journal partitions over them).
 */
export async function startJournal (kind: 'redis' | 'cluster'): Promise<BenchJournal> {
  if (kind === 'redis') {
    const server = await RedisServer.start(EXTRA_ARGS)
    const client = server.client()
    return {
      env: { REDIS_URL: server.url },
      pids: server.pid === undefined ? [] : [server.pid],
      replicaPids: [],
      resetCommandStats: async () => { await client.config('RESETSTAT') },
      commandStats: async () => parseCommandStats(await client.info('commandstats')),
      stop: async () => {
        client.disconnect()
        await server.stop()
      }
    }
  }
  const cluster = await RedisCluster.start(3, 2000, EXTRA_ARGS)
  const primaries = await cluster.primaries()
  const pidsOf = (nodes: typeof cluster.nodes): number[] => nodes.flatMap((node) => (node.pid === undefined ? [] : [node.pid]))
  return {
    env: { REDIS_CLUSTER_NODES: cluster.seedList },
    pids: pidsOf(cluster.nodes),
    replicaPids: pidsOf(cluster.nodes.filter((node) => !primaries.includes(node))),
    resetCommandStats: async () => {},
    commandStats: async () => ({}),
    stop: () => cluster.stop()
  }
}
