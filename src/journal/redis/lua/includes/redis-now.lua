-- Milliseconds on Redis's own clock, so instances whose clocks disagree still agree on
-- which leases have expired.
local function redisNow()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
