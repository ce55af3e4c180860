--[[
  Takes back accepts whose clients were answered 503 (too few replicas in time, or no
  answer within the command timeout): the requests are not the fleet's to run. Only a
  record this very accept call wrote is removed: still queued under the caller, and in
  the caller's owned set with the call's own stamp (a record the caller accepted
  earlier under the same id is left alone). A record a client already waits for (a
  retry that reached a peer first) is left too: it is handed off as an orphan and run.

  KEYS[1]   the caller's owned set in this partition
  KEYS[2..] one record key per request

  ARGV[1]   the caller
  ARGV[2]   length of the record-key prefix
  ARGV[3]   state-hash key prefix
  ARGV[4]   the accept call's stamp: the owned-set score it gave its requests
  ARGV[5]   waiter-key prefix

  Returns the number removed.
]]
-- @include records
local me, prefixLength, statePrefix, stamp, waiterPrefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
local count = 0
for i = 2, #KEYS do
  if recordKind(KEYS[i]) == 'pending' then
    local id = string.sub(KEYS[i], prefixLength + 1)
    local state, owner = pendingState(KEYS[i], statePrefix .. id)
    local score = redis.call('ZSCORE', KEYS[1], id)
    if state == 'queued' and owner == me and score and tonumber(score) == stamp and redis.call('EXISTS', waiterPrefix .. id) == 0 then
      redis.call('DEL', KEYS[i])
      redis.call('ZREM', KEYS[1], id)
      count = count + 1
    end
  end
end
return count
