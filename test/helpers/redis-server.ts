export { RedisServer } from '../../scripts/lib/redis-server.js'
export { onlineReplicas, RedisCluster, replicaInSync } from '../../scripts/lib/redis-cluster.js'
export { RedisSentinelGroup } from '../../scripts/lib/redis-sentinel.js'
