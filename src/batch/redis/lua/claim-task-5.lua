--[[
  Claims a work stream entry for the caller, with a new fencing epoch. Whether the entry
  is still needed is decided here, from the batch's state, never from the caller's memory.

  KEYS[1]   the batch hash
  KEYS[2]   the batch's shard hash (per shard n: n:r range, n:e epoch, n:o holder,
            n:a attempts, n:h handed back, n:d lines done, n:x given up)
  KEYS[3]   the batch's done bitmap (bit i: line i is committed)
  KEYS[4]   the work stream
  KEYS[5]   the status counts hash

  ARGV[1]   stream entry id
  ARGV[2]   kind: validate, shard or final
  ARGV[3]   shard index
  ARGV[4]   the caller (instance id)
  ARGV[5]   most attempts per shard
  ARGV[6]   consumer group
  ARGV[7]   now (unix seconds)
  ARGV[8]   ttl of the stream (ms)
  ARGV[9]   batch id
  ARGV[10]  the set of batches not yet terminal

  Returns {'skip'} (the entry is acked and deleted), {'exhausted'},
  {'validate', epoch}, {'final', epoch}, or
  {'shard', epoch, range, done ('0'/'1' per line), taken over (0/1), handed back (0/1)}.
]]
-- @include batch-status
local entry, kind, n, me, group = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[6]
local status = redis.call('HGET', KEYS[1], 'status')
local function skip()
  ack(KEYS[4], group, entry)
  return { 'skip' }
end
if not status then return skip() end

if kind == 'validate' then
  if status ~= 'validating' then return skip() end
  return { 'validate', redis.call('HINCRBY', KEYS[1], 'validate_epoch', 1) }
end

if kind == 'final' then
  if TERMINAL[status] then return skip() end
  -- From here no commit is recorded: what finalization reads cannot change under it.
  redis.call('HSET', KEYS[1], 'sealed', '1')
  return { 'final', redis.call('HINCRBY', KEYS[1], 'final_epoch', 1) }
end

if status ~= 'in_progress' and status ~= 'cancelling' then return skip() end
if redis.call('HGET', KEYS[1], 'sealed') == '1' then return skip() end
local range = redis.call('HGET', KEYS[2], n .. ':r')
if not range then return skip() end
local _, _, first, count = string.match(range, '(%d+) (%d+) (%d+) (%d+)')
first, count = tonumber(first), tonumber(count)
if tonumber(redis.call('HGET', KEYS[2], n .. ':d') or '0') >= count or redis.call('HGET', KEYS[2], n .. ':x') == '1' then return skip() end
if status == 'cancelling' then return skip() end

local handed = redis.call('HGET', KEYS[2], n .. ':h') == '1'
local holder = redis.call('HGET', KEYS[2], n .. ':o') or ''
local takenOver = (not handed) and holder ~= ''
if handed then
  redis.call('HSET', KEYS[2], n .. ':h', '0')
else
  local attempts = redis.call('HINCRBY', KEYS[2], n .. ':a', 1)
  if attempts > tonumber(ARGV[5]) then
    -- Its unfinished lines go to the error file; the batch finishes without them.
    redis.call('HSET', KEYS[2], n .. ':x', '1', n .. ':o', '')
    redis.call('HINCRBY', KEYS[2], n .. ':e', 1)
    local done = redis.call('HINCRBY', KEYS[1], 'shards_done', 1)
    if done >= tonumber(redis.call('HGET', KEYS[1], 'shards')) and status == 'in_progress' then
      setStatus(KEYS[1], KEYS[5], ARGV[10], ARGV[9], 'finalizing')
      redis.call('HSET', KEYS[1], 'finalizing_at', ARGV[7], 'ending', 'completed')
      queueFinal(KEYS[1], KEYS[4], ARGV[9], tonumber(ARGV[8]))
    end
    ack(KEYS[4], group, entry)
    return { 'exhausted' }
  end
end
local epoch = redis.call('HINCRBY', KEYS[2], n .. ':e', 1)
redis.call('HSET', KEYS[2], n .. ':o', me)
local done = {}
for i = 0, count - 1 do done[#done + 1] = tostring(redis.call('GETBIT', KEYS[3], first + i)) end
return { 'shard', epoch, range, table.concat(done), takenOver and 1 or 0, handed and 1 or 0 }
