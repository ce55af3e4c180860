--[[
  Claims one replay stream entry for the caller. The journal alone decides, never the
  caller's memory: a request is skipped only when it is final, held by a live instance
  (which stores its answer), or already being replayed by the caller (a second entry for
  the same request). A skipped entry is acked and deleted without counting an attempt.

  KEYS[1]   the record key
  KEYS[2]   this partition's leases
  KEYS[3]   this partition's replay stream
  KEYS[4]   this partition's hand-off index

  ARGV[1]   now (ms)
  ARGV[2]   the caller
  ARGV[3]   most attempts
  ARGV[4]   the caller's owned set
  ARGV[5]   consumer group
  ARGV[6]   stream entry id
  ARGV[7]   request id
  ARGV[8]   state-hash key
  ARGV[9]   ttl of the state hash (ms)

  Returns {'skip'}, {'exhausted', attempts, last error, fingerprint} or
  {'claimed', canonical request bytes, fingerprint, attempts, handed-off at (ms)}.
]]
-- @include redis-now
-- @include records
local now, me, maxAttempts, owned, group, entry, id, stateKey = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local function skip()
  redis.call('XACK', KEYS[3], group, entry)
  redis.call('XDEL', KEYS[3], entry)
  return { 'skip' }
end
local record = redis.call('GET', KEYS[1])
if not record or string.sub(record, 1, 1) ~= 'P' then
  redis.call('ZREM', KEYS[4], id)
  return skip()
end
local state, holder, attempts = pendingState(KEYS[1], stateKey)
if state == 'replaying' and holder == me then return skip() end
if state ~= 'handed_off' and holder ~= '' then
  local lease = redis.call('ZSCORE', KEYS[2], holder)
  if lease and tonumber(lease) > redisNow() then return skip() end
end
attempts = attempts + 1
if attempts > maxAttempts then return { 'exhausted', attempts - 1, redis.call('HGET', stateKey, 'error') or '', string.sub(record, 2, FINGERPRINT_END) } end
local handedAt = redis.call('HGET', stateKey, 'updated') or now
redis.call('HSET', stateKey, 'state', 'replaying', 'owner', me, 'attempts', attempts, 'updated', now)
redis.call('PEXPIRE', stateKey, ARGV[9])
redis.call('ZADD', owned, now, id)
redis.call('ZREM', KEYS[4], id)
local _, newline = recordOwner(string.sub(record, 1, HEAD_BYTES))
return { 'claimed', string.sub(record, newline + 1), string.sub(record, 2, FINGERPRINT_END), attempts, handedAt }
