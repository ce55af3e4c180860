--[[
  Moves a batch from one of the given statuses to another (or keeps its status and only
  sets fields), optionally fenced by a claim's epoch, queueing its finalization and
  removing the task that made the change from the stream.

  KEYS[1]   the batch hash
  KEYS[2]   the status counts hash
  KEYS[3]   the work stream
  KEYS[4]   the set of batches not yet terminal

  ARGV[1]   statuses the batch may be in, comma-separated
  ARGV[2]   new status ('' keeps the current one)
  ARGV[3]   epoch field to check ('' for none)
  ARGV[4]   the caller's epoch
  ARGV[5]   stream entry id to remove ('' for none)
  ARGV[6]   consumer group
  ARGV[7]   '1' to queue the batch's finalization
  ARGV[8]   batch id
  ARGV[9]   ttl of the stream (ms)
  ARGV[10..] field, value, ... to set

  Returns {1, status} when applied, {0, status or ''} otherwise.
]]
-- @include batch-status
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return { 0, '' } end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == status then allowed = true end end
if not allowed then return { 0, status } end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], ARGV[3]) ~= ARGV[4] then return { 0, status } end
for i = 10, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[2] ~= '' then setStatus(KEYS[1], KEYS[2], KEYS[4], ARGV[8], ARGV[2]) end
if ARGV[7] == '1' then queueFinal(KEYS[1], KEYS[3], ARGV[8], tonumber(ARGV[9])) end
ack(KEYS[3], ARGV[6], ARGV[5])
return { 1, redis.call('HGET', KEYS[1], 'status') }
