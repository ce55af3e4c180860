--[[
  Records a new batch (status validating) and queues its validation. A re-sent call
  finds the batch and changes nothing.

  KEYS[1]   the batch hash
  KEYS[2]   the batches index (sorted set, score: creation ms)
  KEYS[3]   the work stream
  KEYS[4]   the status counts hash
  KEYS[5]   the set of batches not yet terminal

  ARGV[1]   batch id
  ARGV[2]   creation time (ms); the index's scores strictly increase, so pages are stable
  ARGV[3]   ttl of the batch's keys (ms)
  ARGV[4..] field, value, ... of the batch

  Returns 1 when created, 0 when the batch existed.
]]
-- @include batch-status
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local id, ttl = ARGV[1], tonumber(ARGV[3])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HDEL', KEYS[1], 'status')
setStatus(KEYS[1], KEYS[4], KEYS[5], id, 'validating')
redis.call('PEXPIRE', KEYS[1], ttl)
local newest = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local score = tonumber(ARGV[2])
if newest[2] and tonumber(newest[2]) >= score then score = tonumber(newest[2]) + 1 end
redis.call('ZADD', KEYS[2], score, id)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('SADD', KEYS[5], id)
redis.call('PEXPIRE', KEYS[5], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
redis.call('XADD', KEYS[3], '*', 'kind', 'validate', 'batch', id, 'shard', '0')
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
