--[[
  Records a part a worker wrote to storage: each of its lines not yet committed by an
  earlier part now belongs to this one (first write wins). Fenced: a caller whose claim
  was taken over (an older epoch) records nothing, nor does anyone once the batch is
  sealed for finalization. The last line of a shard completes it; the last shard of a
  batch queues its finalization.

  KEYS[1]   the batch hash
  KEYS[2]   the batch's shard hash
  KEYS[3]   the batch's done bitmap
  KEYS[4]   the batch's parts hash (part name → the lines it holds, comma-separated)
  KEYS[5]   the work stream
  KEYS[6]   the status counts hash
  KEYS[7]   the set of batches not yet terminal

  ARGV[1]   shard index
  ARGV[2]   the caller's epoch
  ARGV[3]   part name
  ARGV[4]   the shard's stream entry id
  ARGV[5]   consumer group
  ARGV[6]   now (unix seconds)
  ARGV[7]   ttl of the batch's keys (ms)
  ARGV[8]   batch id
  ARGV[9]   line indexes, comma-separated
  ARGV[10]  per line, 'o' (its answer goes to the output file) or 'f' (the error file)

  Returns {'stale'}, {'sealed'} or {'ok', lines won, shard complete (0/1)}.
]]
-- @include batch-status
local n = ARGV[1]
if redis.call('HGET', KEYS[1], 'sealed') == '1' then return { 'sealed' } end
if redis.call('HGET', KEYS[2], n .. ':e') ~= ARGV[2] then return { 'stale' } end
local ttl = tonumber(ARGV[7])
local won, completed, failed = {}, 0, 0
local i = 0
for index in string.gmatch(ARGV[9], '%d+') do
  i = i + 1
  if redis.call('SETBIT', KEYS[3], tonumber(index), 1) == 0 then
    won[#won + 1] = index
    if string.sub(ARGV[10], i, i) == 'o' then completed = completed + 1 else failed = failed + 1 end
  end
end
if #won > 0 then
  redis.call('HSET', KEYS[4], ARGV[3], table.concat(won, ','))
  redis.call('HINCRBY', KEYS[1], 'completed', completed)
  redis.call('HINCRBY', KEYS[1], 'failed', failed)
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
end
local done = redis.call('HINCRBY', KEYS[2], n .. ':d', #won)
local range = redis.call('HGET', KEYS[2], n .. ':r')
local count = tonumber(string.match(range, '%d+ %d+ %d+ (%d+)'))
if done < count then return { 'ok', #won, 0 } end
redis.call('HSET', KEYS[2], n .. ':o', '')
ack(KEYS[5], ARGV[5], ARGV[4])
local shardsDone = redis.call('HINCRBY', KEYS[1], 'shards_done', 1)
if shardsDone >= tonumber(redis.call('HGET', KEYS[1], 'shards')) and redis.call('HGET', KEYS[1], 'status') == 'in_progress' then
  setStatus(KEYS[1], KEYS[6], KEYS[7], ARGV[8], 'finalizing')
  redis.call('HSET', KEYS[1], 'finalizing_at', ARGV[6], 'ending', 'completed')
  queueFinal(KEYS[1], KEYS[5], ARGV[8], ttl)
end
return { 'ok', #won, 1 }
