--[[
  Stores the answers of a group of requests. First write wins: a final record is never
  replaced, so of two runs of the same request (a replay and a late original) the first
  answer stored is the one every client gets.

  KEYS[1]   the caller's owned set in this partition
  KEYS[2..] one record key per answer

  ARGV[1]   record ttl (ms)
  ARGV[2]   length of the record-key prefix
  ARGV[3]   waiter-key prefix: a request someone waits for has one, and so does the
            partition while anyone waits for any of its requests (see read-1.lua)
  ARGV[4]   channel prefix
  ARGV[5]   the publish command: PUBLISH, or SPUBLISH on a cluster (sharded pub/sub)
  ARGV[6..] one packed final record per record key

  Returns, per answer: 1 stored, 0 already final, -1 no such request (expired).
  The id leaves the caller's owned set either way: the caller is done with it.
]]
local ttl, prefixLength, waiterPrefix, channelPrefix, publish = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
-- Publishing is replicated and written to the AOF: only for a request a client waits for.
-- Usually nobody waits at all, which one lookup for the whole group tells.
local anyWaiter = redis.call('EXISTS', waiterPrefix) == 1
local out = {}
local done = {}
for i = 2, #KEYS do
  local kind = redis.call('GETRANGE', KEYS[i], 0, 0)
  local id = string.sub(KEYS[i], prefixLength + 1)
  done[#done + 1] = id
  if kind == 'P' then
    redis.call('SET', KEYS[i], ARGV[i + 4], 'PX', ttl)
    if anyWaiter and redis.call('EXISTS', waiterPrefix .. id) == 1 then redis.call(publish, channelPrefix .. id, 'final') end
    out[#out + 1] = 1
  elseif kind == 'F' then
    out[#out + 1] = 0
  else
    out[#out + 1] = -1
  end
end
redis.call('ZREM', KEYS[1], unpack(done))
return out
