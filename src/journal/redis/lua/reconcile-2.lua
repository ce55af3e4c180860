--[[
  The safety net under the hand-off: requests handed off at least ARGV[1] ms ago whose
  replay stream entry is gone get a new one. An entry still in the stream is waiting or
  being replayed (entries leave the stream only when acked, once their request is final
  or handed off again), so only a request no instance will ever run is queued again.

  KEYS[1]   this partition's hand-off index
  KEYS[2]   this partition's replay stream

  ARGV[1]   minimum age (ms)
  ARGV[2]   most requests to examine
  ARGV[3]   record-key prefix
  ARGV[4]   state-hash key prefix
  ARGV[5]   stream ttl (ms)

  Returns {examined, ids queued again…}.
]]
-- @include redis-now
-- @include records
local now = redisNow()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
local out = { #ids }
for _, id in ipairs(ids) do
  local recordKey, stateKey = ARGV[3] .. id, ARGV[4] .. id
  local found = redis.call('HMGET', stateKey, 'state', 'entry')
  if recordKind(recordKey) ~= 'pending' or found[1] ~= 'handed_off' then
    redis.call('ZREM', KEYS[1], id)
  elseif found[2] and #redis.call('XRANGE', KEYS[2], found[2], found[2]) > 0 then
    redis.call('ZADD', KEYS[1], now, id)
  else
    local entry = redis.call('XADD', KEYS[2], '*', 'id', id, 'reason', 'reconciled')
    redis.call('HSET', stateKey, 'entry', entry, 'updated', now)
    redis.call('ZADD', KEYS[1], now, id)
    redis.call('PEXPIRE', KEYS[2], ARGV[5])
    out[#out + 1] = id
  end
end
return out
