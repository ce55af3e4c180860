--[[
  Gives requests the caller can no longer finish to the fleet: each pending one the
  caller owns becomes `handed_off`, leaves the caller's owned set and gets a replay
  stream entry. Final requests, and those a peer took over after the caller's lease
  lapsed, are left alone, so a re-sent call changes nothing.

  KEYS[1]   this partition's replay stream
  KEYS[2]   this partition's hand-off index (id → hand-off time), read by reconcile-2.lua
  KEYS[3]   the caller's owned set
  KEYS[4..] one record key per request

  ARGV[1]   the caller
  ARGV[2]   why (drain, deadline, signal, worker_crashed, orphaned, …)
  ARGV[3]   '1' when the hand-off is clean (a drain): a replay in progress gets its attempt back
  ARGV[4]   now (ms)
  ARGV[5]   ttl of the stream, the index and the state hash (ms)
  ARGV[6]   length of the record-key prefix
  ARGV[7]   state-hash key prefix

  Returns the number handed off.
]]
-- @include records
local me, reason, refund, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local prefixLength, statePrefix = tonumber(ARGV[6]), ARGV[7]
local count = 0
for i = 4, #KEYS do
  if recordKind(KEYS[i]) == 'pending' then
    local id = string.sub(KEYS[i], prefixLength + 1)
    local stateKey = statePrefix .. id
    local state, owner, attempts = pendingState(KEYS[i], stateKey)
    if (state == 'queued' or state == 'replaying') and owner == me then
      redis.call('ZREM', KEYS[3], id)
      if refund == '1' and state == 'replaying' and attempts > 0 then attempts = attempts - 1 end
      local entry = redis.call('XADD', KEYS[1], '*', 'id', id, 'reason', reason)
      redis.call('HSET', stateKey, 'state', 'handed_off', 'owner', '', 'attempts', attempts, 'reason', reason, 'entry', entry, 'updated', now)
      redis.call('PEXPIRE', stateKey, ttl)
      redis.call('ZADD', KEYS[2], now, id)
      count = count + 1
    end
  end
end
if count > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return count
