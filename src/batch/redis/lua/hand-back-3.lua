--[[
  A draining instance gives a shard back at once: a new entry any instance can read now,
  the next claim of which uses no attempt, and a new epoch so nothing the caller still
  sends is recorded.

  KEYS[1]   the batch's shard hash
  KEYS[2]   the work stream
  KEYS[3]   the batch hash

  ARGV[1]   shard index
  ARGV[2]   the caller's epoch
  ARGV[3]   the shard's stream entry id
  ARGV[4]   consumer group
  ARGV[5]   batch id
  ARGV[6]   ttl of the stream (ms)

  Returns 1 when handed back, 0 when the claim was no longer the caller's.
]]
-- @include batch-status
local n = ARGV[1]
if redis.call('HGET', KEYS[1], n .. ':e') ~= ARGV[2] then return 0 end
redis.call('HINCRBY', KEYS[1], n .. ':e', 1)
redis.call('HSET', KEYS[1], n .. ':h', '1', n .. ':o', '')
ack(KEYS[2], ARGV[4], ARGV[3])
redis.call('XADD', KEYS[2], '*', 'kind', 'shard', 'batch', ARGV[5], 'shard', n)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]))
return 1
