// Where the journal's Redis is, in the three ways operators run it: one node (a URL),
// a primary with replicas behind Sentinel, or a Redis Cluster (ElastiCache cluster
// mode, Memorystore Cluster, `redis-cli --cluster create`).

export interface HostPort {
  readonly host: string
  readonly port: number
}

/** Credentials and TLS for Sentinel and Cluster nodes (a URL carries its own). */
export interface RedisAuth {
  readonly username?: string
  readonly password?: string
  readonly tls: boolean
}

export type RedisTarget =
  | { readonly mode: 'single', readonly url: string }
  | { readonly mode: 'sentinel', readonly sentinels: readonly HostPort[], readonly master: string, readonly auth: RedisAuth, readonly sentinelPassword?: string }
  | { readonly mode: 'cluster', readonly nodes: readonly HostPort[], readonly auth: RedisAuth }

/** `host:port,host:port` (at least one); throws with the offending entry. */
export function parseHostPorts (list: string): HostPort[] {
  const entries = list.split(',').map((entry) => entry.trim()).filter(Boolean)
  if (entries.length === 0) throw new Error('names no server')
  return entries.map((entry) => {
    const at = entry.lastIndexOf(':')
    const host = entry.slice(0, at).replace(/^\[(.*)\]$/, '$1')
    const port = Number(entry.slice(at + 1))
    if (at <= 0 || host === '' || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`'${entry}' is not host:port`)
    return { host, port }
  })
}

/** A target for logs: where, never credentials. */
export function describeTarget (target: RedisTarget): string {
  switch (target.mode) {
    case 'single': {
      const url = new URL(target.url)
      return `${url.protocol}//${url.host}${url.pathname}`
    }
    case 'sentinel': return `Sentinel master '${target.master}' via ${target.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`
    case 'cluster': return `Redis Cluster via ${target.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`
  }
}

/** Why a REDIS_URL cannot be used (undefined when it can): ioredis would throw deep inside a connection attempt. */
export function redisUrlProblem (value: string): string | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'is not a valid URL (a port from 1 to 65535, brackets around an IPv6 address)'
  }
  if (url.hostname === '') return 'names no host'
  if (url.port !== '' && (Number(url.port) < 1 || Number(url.port) > 65535)) return `port ${url.port} is not from 1 to 65535`
  const db = url.pathname.replace(/^\//, '')
  if (db !== '' && !/^\d{1,5}$/.test(db)) return `the database, /${db.slice(0, 20)}, is not a number`
  return undefined
}
