import { RedisServer } from '../scripts/lib/redis-server.js'

/** How the bench runs Redis (the launcher's AOF, fsync once a second): durable short of fsync per write. */
const EXTRA_ARGS = ['--appendfsync', 'everysec'] as const
export const REDIS_SETTINGS = ['--save', '', '--appendonly', 'yes', ...EXTRA_ARGS] as const

/** A redis-server of the bench's own on a free loopback port, for one journal-on run. */
export function startRedis (): Promise<RedisServer> {
  return RedisServer.start(EXTRA_ARGS)
}
