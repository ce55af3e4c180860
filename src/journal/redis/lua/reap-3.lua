--[[
  Takes over the unfinished work of instances whose lease expired in this partition.
  Atomic, so of several peers racing exactly one moves each dead instance's requests.

  KEYS[1]   this partition's leases
  KEYS[2]   this partition's replay stream
  KEYS[3]   this partition's hand-off index

  ARGV[1]   owned-set key prefix (the instance follows it)
  ARGV[2]   record-key prefix
  ARGV[3]   state-hash key prefix
  ARGV[4]   ttl of the stream, the index and the state hashes (ms)

  Returns {instances taken over, requests moved to the replay stream}.
]]
-- @include redis-now
-- @include records
local now = redisNow()
local ownedPrefix, recordPrefix, statePrefix, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 16)
local moved = 0
for _, instance in ipairs(dead) do
  redis.call('ZREM', KEYS[1], instance)
  local owned = ownedPrefix .. instance
  for _, id in ipairs(redis.call('ZRANGE', owned, 0, -1)) do
    local recordKey, stateKey = recordPrefix .. id, statePrefix .. id
    if recordKind(recordKey) == 'pending' then
      local state, owner = pendingState(recordKey, stateKey)
      if (state == 'queued' or state == 'replaying') and owner == instance then
        local entry = redis.call('XADD', KEYS[2], '*', 'id', id, 'reason', 'lease_expired')
        redis.call('HSET', stateKey, 'state', 'handed_off', 'owner', '', 'reason', 'lease_expired', 'entry', entry, 'updated', now)
        redis.call('PEXPIRE', stateKey, ttl)
        redis.call('ZADD', KEYS[3], now, id)
        moved = moved + 1
      end
    end
  end
  redis.call('DEL', owned)
end
if moved > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return { #dead, moved }
