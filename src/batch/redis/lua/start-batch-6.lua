--[[
  A validated batch starts: validating → in_progress with its model version pinned and
  one stream entry per shard. Fenced by the validation's epoch, so a validator that
  lost its claim (and a re-sent call) changes nothing.

  KEYS[1]   the batch hash
  KEYS[2]   the batch's shard hash
  KEYS[3]   the work stream
  KEYS[4]   the status counts hash
  KEYS[5]   the set of batches not yet terminal
  KEYS[6]   the batch's done bitmap

  ARGV[1]   the validation's epoch
  ARGV[2]   now (unix seconds)
  ARGV[3]   model
  ARGV[4]   version
  ARGV[5]   total lines
  ARGV[6]   the validation's stream entry id
  ARGV[7]   consumer group
  ARGV[8]   batch id
  ARGV[9]   ttl (ms)
  ARGV[10..] each shard's range: 'start end firstLine count'

  Returns 1 when started, 0 otherwise.
]]
-- @include batch-status
if redis.call('HGET', KEYS[1], 'status') ~= 'validating' or redis.call('HGET', KEYS[1], 'validate_epoch') ~= ARGV[1] then return 0 end
local ttl, id = tonumber(ARGV[9]), ARGV[8]
local shards = #ARGV - 9
redis.call('HSET', KEYS[1], 'in_progress_at', ARGV[2], 'model', ARGV[3], 'version', ARGV[4], 'total', ARGV[5], 'shards', shards, 'shards_done', 0, 'completed', 0, 'failed', 0)
setStatus(KEYS[1], KEYS[4], KEYS[5], id, 'in_progress')
for s = 0, shards - 1 do
  redis.call('HSET', KEYS[2], s .. ':r', ARGV[10 + s], s .. ':e', 0, s .. ':a', 0, s .. ':d', 0)
  redis.call('XADD', KEYS[3], '*', 'kind', 'shard', 'batch', id, 'shard', s)
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
ack(KEYS[3], ARGV[7], ARGV[6])
if shards == 0 then
  setStatus(KEYS[1], KEYS[4], KEYS[5], id, 'finalizing')
  redis.call('HSET', KEYS[1], 'finalizing_at', ARGV[2], 'ending', 'completed')
  queueFinal(KEYS[1], KEYS[3], id, ttl)
end
return 1
