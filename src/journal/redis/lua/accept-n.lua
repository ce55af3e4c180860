--[[
  Journals a group of requests before they run: one SET NX per request, so an existing
  record (a retry, a duplicate) is never overwritten and is returned instead.

  KEYS[1]   the caller's owned set in this partition
  KEYS[2]   this partition's leases
  KEYS[3..] one record key per request

  ARGV[1]   record ttl (ms)
  ARGV[2]   lease ttl (ms)
  ARGV[3]   the caller (instance id)
  ARGV[4]   accept time (ms), the owned set's score
  ARGV[5]   length of the record-key prefix (the id follows it)
  ARGV[6]   state-hash key prefix
  ARGV[7..] one packed pending record per record key

  Returns, per request: 1 when journaled now; else the existing record: a final one
  whole, a pending one as {its head up to the owner's newline, state, owner}.
  The caller's lease is created when missing, so no owned request is ever outside a lease.
]]
-- @include redis-now
-- @include records
local ttl, prefixLength, statePrefix = ARGV[1], tonumber(ARGV[5]), ARGV[6]
redis.call('ZADD', KEYS[2], 'NX', redisNow() + tonumber(ARGV[2]), ARGV[3])
if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], math.max(tonumber(ttl), tonumber(ARGV[2]) * 10)) end
local out = {}
local owned = {}
for i = 3, #KEYS do
  local existing = redis.call('SET', KEYS[i], ARGV[i + 4], 'NX', 'PX', ttl, 'GET')
  local id = string.sub(KEYS[i], prefixLength + 1)
  if not existing then
    out[#out + 1] = 1
    owned[#owned + 1] = ARGV[4]
    owned[#owned + 1] = id
  elseif string.sub(existing, 1, 1) == 'F' then
    out[#out + 1] = existing
  else
    local _, newline = recordOwner(string.sub(existing, 1, HEAD_BYTES))
    local state, owner = pendingState(KEYS[i], statePrefix .. id)
    out[#out + 1] = { string.sub(existing, 1, newline), state, owner }
  end
end
if #owned > 0 then
  redis.call('ZADD', KEYS[1], unpack(owned))
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return out
