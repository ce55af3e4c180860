import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import { loadScripts } from './scripts.js'
import type { RedisTarget } from './target.js'

// ioredis clients for each way of running Redis, all set up to fail fast: no offline
// queue, a command timeout, no retries of a command (the journal answers 503 instead),
// reconnection in the background. The Lua scripts are defined on every client.

export type RedisClient = Redis | Cluster

export interface ClientSettings {
  readonly commandTimeoutMs: number
  readonly connectionName: string
  readonly autoPipelining: boolean
}

const reconnectDelay = (attempt: number): number => Math.min(50 * 2 ** attempt, 1000)

/** Clients closed by closeClient: the only ones allowed to stay closed. */
const closedOnPurpose = new WeakSet<RedisClient>()
const RESTART_AFTER_END_MS = 500

/** A failed-over primary that is still reachable answers writes with READONLY: reconnect to find the new one. */
const reconnectOnReadOnly = (error: Error): 2 | false => (error.message.startsWith('READONLY') ? 2 : false)

function nodeOptions (settings: ClientSettings): RedisOptions {
  return {
    enableOfflineQueue: false,
    commandTimeout: settings.commandTimeoutMs,
    maxRetriesPerRequest: 0,
    enableAutoPipelining: settings.autoPipelining,
    connectTimeout: Math.max(1000, settings.commandTimeoutMs),
    keepAlive: 5000,
    connectionName: settings.connectionName
  }
}

export function openClient (target: RedisTarget, settings: ClientSettings, extra: Partial<ClusterOptions> = {}): RedisClient {
  const client = createClient(target, settings, extra)
  for (const script of loadScripts()) {
    client.defineCommand(script.command, { lua: script.lua, ...(script.numberOfKeys !== undefined && { numberOfKeys: script.numberOfKeys }) })
  }
  // ioredis gives a client up for good ('end') when a connect attempt is cut short, as its
  // Sentinel failover detector does when +switch-master arrives while it reconnects: the
  // journal would stay unavailable until a restart. Such a client is started again.
  client.on('end', () => {
    if (closedOnPurpose.has(client)) return
    setTimeout(() => {
      if (!closedOnPurpose.has(client) && client.status === 'end') client.connect().catch(() => {})
    }, RESTART_AFTER_END_MS).unref()
  })
  return client
}

/** Closes a client for good (QUIT first when `gracefully`, so replies in flight arrive). */
export async function closeClient (client: RedisClient, gracefully: boolean): Promise<void> {
  closedOnPurpose.add(client)
  if (gracefully) await client.quit().catch(() => {})
  client.disconnect()
}

function createClient (target: RedisTarget, settings: ClientSettings, extra: Partial<ClusterOptions>): RedisClient {
  const options = nodeOptions(settings)
  switch (target.mode) {
    case 'single':
      return new Redis(target.url, { ...options, retryStrategy: reconnectDelay, reconnectOnError: reconnectOnReadOnly })
    case 'sentinel': {
      const { auth } = target
      return new Redis({
        ...options,
        sentinels: target.sentinels.map(({ host, port }) => ({ host, port })),
        name: target.master,
        role: 'master',
        // Sentinels are asked again on every reconnect; failoverDetector also reconnects on +switch-master.
        failoverDetector: true,
        sentinelRetryStrategy: reconnectDelay,
        retryStrategy: reconnectDelay,
        reconnectOnError: reconnectOnReadOnly,
        sentinelCommandTimeout: settings.commandTimeoutMs,
        ...(target.sentinelPassword !== undefined && { sentinelPassword: target.sentinelPassword }),
        ...(auth.username !== undefined && { username: auth.username }),
        ...(auth.password !== undefined && { password: auth.password }),
        ...(auth.tls && { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true })
      })
    }
    case 'cluster': {
      const { auth } = target
      return new Cluster(target.nodes.map(({ host, port }) => ({ host, port })), {
        enableOfflineQueue: false,
        enableAutoPipelining: settings.autoPipelining,
        // Auto-pipelining routes a call by its first argument, which for a script of a variable
        // number of keys is that number, not a key: those (one call per group commit) go alone.
        autoPipeliningIgnoredCommands: loadScripts().filter((script) => script.numberOfKeys === undefined).map((script) => script.command),
        scaleReads: 'master',
        clusterRetryStrategy: reconnectDelay,
        retryDelayOnFailover: 100,
        retryDelayOnClusterDown: 100,
        retryDelayOnTryAgain: 100,
        retryDelayOnMoved: 0,
        slotsRefreshTimeout: Math.max(1000, settings.commandTimeoutMs),
        slotsRefreshInterval: 2000,
        // ElastiCache and Memorystore name nodes by address; TLS then needs the name checks of the seed host.
        ...(auth.tls && { dnsLookup: (address: string, callback: (error: null, address: string) => void) => callback(null, address) }),
        redisOptions: {
          ...options,
          ...(auth.username !== undefined && { username: auth.username }),
          ...(auth.password !== undefined && { password: auth.password }),
          ...(auth.tls && { tls: {} })
        },
        ...extra
      })
    }
  }
}

export function isCluster (client: RedisClient): client is Cluster {
  return client instanceof Cluster
}

/**
 * Creates a stream's consumer group (and the stream) with a TTL in one transaction, so
 * no crash or slow moment ever leaves the stream without one; an existing group and
 * an existing TTL are kept.
 */
export async function createGroupWithTtl (client: RedisClient, stream: string, group: string, ttlMs: number): Promise<void> {
  const results = await client.multi().xgroup('CREATE', stream, group, '0', 'MKSTREAM').pexpire(stream, ttlMs, 'NX').exec()
  for (const [error] of results ?? []) {
    if (error !== null && !error.message.includes('BUSYGROUP')) throw error
  }
}
