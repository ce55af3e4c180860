--[[
  Renews the caller's lease in one partition.

  KEYS[1]   this partition's leases (instance → expiry, ms on Redis's clock)

  ARGV[1]   the caller
  ARGV[2]   lease ttl (ms)
  ARGV[3]   ttl of the leases key itself (ms)

  Returns 1 when the previous lease was still valid, 0 when there was none (first start,
  or it expired and a peer may have taken over the caller's work).
]]
-- @include redis-now
local now = redisNow()
local previous = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if previous and tonumber(previous) >= now then return 1 end
return 0
