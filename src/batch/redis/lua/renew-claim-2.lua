--[[
  Keeps a live claim from being taken over: resets its stream entry's idle time, but only
  while the caller's epoch is current. A claimant that wakes after its work was taken
  over (a pause past the lease) must not take the entry back.

  KEYS[1]   the hash holding the epoch (the shard hash, or the batch hash)
  KEYS[2]   the work stream

  ARGV[1]   epoch field
  ARGV[2]   the caller's epoch
  ARGV[3]   consumer group
  ARGV[4]   the caller
  ARGV[5]   stream entry id

  Returns 1 when renewed, 0 when the claim is no longer the caller's.
]]
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, ARGV[5], 'JUSTID')
return 1
