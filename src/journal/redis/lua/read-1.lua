--[[
  Reads a request without its payload: a final record whole (the stored answer), a
  pending one as its head, state and owner. With a waiter ttl, first marks that a
  client waits for it, so its completion is published (complete-n.lua).

  KEYS[1]   the record key

  ARGV[1]   the state-hash key
  ARGV[2]   the waiter-key prefix: the request's waiter key is the prefix and the id,
            and the prefix alone tells completions that someone waits in this partition
  ARGV[3]   the request id
  ARGV[4]   waiter ttl (ms), or 0 not to wait

  Returns nil (unknown), the final record, or {head, state, owner}.
]]
-- @include records
-- A mark only ever lengthens: a short wait must not cut short a longer one elsewhere.
local waitTtl = tonumber(ARGV[4])
if waitTtl > 0 then
  if redis.call('PTTL', ARGV[2] .. ARGV[3]) < waitTtl then redis.call('SET', ARGV[2] .. ARGV[3], '1', 'PX', waitTtl) end
  if redis.call('PTTL', ARGV[2]) < waitTtl then redis.call('SET', ARGV[2], '1', 'PX', waitTtl) end
end
local kind = recordKind(KEYS[1])
if kind == nil then return nil end
if kind == 'final' then return redis.call('GET', KEYS[1]) end
local head = redis.call('GETRANGE', KEYS[1], 0, HEAD_BYTES - 1)
local _, newline = recordOwner(head)
local state, owner = pendingState(KEYS[1], ARGV[1])
return { string.sub(head, 1, newline), state, owner }
