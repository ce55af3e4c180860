-- Status changes keep the fleet-wide count per status (the spotgate_batches gauge) and
-- the set of batches still running (the expiry sweep) in step with the batch itself.
local TERMINAL = { failed = true, completed = true, expired = true, cancelled = true }
local function setStatus(batchKey, countsKey, activeKey, batchId, status)
  local old = redis.call('HGET', batchKey, 'status')
  if old == status then return end
  redis.call('HSET', batchKey, 'status', status)
  if old then redis.call('HINCRBY', countsKey, old, -1) end
  redis.call('HINCRBY', countsKey, status, 1)
  if TERMINAL[status] then redis.call('SREM', activeKey, batchId) end
end
-- Finalization is queued once per batch, whoever asks first (the last commit, a cancel, the expiry sweep).
local function queueFinal(batchKey, stream, batchId, ttl)
  if redis.call('HSETNX', batchKey, 'final_queued', '1') == 1 then
    redis.call('XADD', stream, '*', 'kind', 'final', 'batch', batchId, 'shard', '0')
    redis.call('PEXPIRE', stream, ttl)
  end
end
local function ack(stream, group, entry)
  if entry ~= '' then
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
  end
end
